-- The client.Client that syncs a node database: the latest one created on
-- it (client.New writes its random id here). A Client whose id is no
-- longer the one recorded stops syncing (dbsync.ErrNodeInUse): two
-- Clients on one node database, in one process or two, would settle one
-- push attempt twice, and one's pull would merge (and renumber) the
-- operations of the other's push in flight. One row; unused on a server.
CREATE TABLE IF NOT EXISTS sync_client_owner (
    id    INTEGER NOT NULL PRIMARY KEY,
    owner TEXT    NOT NULL
);
