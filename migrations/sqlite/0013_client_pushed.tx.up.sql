-- The greatest version the node's own pushes created that the node has
-- settled (its push answered, or a pull or push-status reporting on it).
-- A node database restored from a backup (or copied) holds an older one
-- than the server's versions of that node: its next pull, reset or push
-- is refused (dbsync.ErrRepairNeeded) instead of missing the rows it
-- pushed after the backup and pushing again what it had pushed. No row:
-- not known (a node registered by an earlier release, until its next
-- settled push). One row; unused on a server.
CREATE TABLE IF NOT EXISTS sync_client_pushed (
    id         INTEGER NOT NULL PRIMARY KEY,
    version_id BIGINT  NOT NULL
);
