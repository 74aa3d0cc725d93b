-- The models of the newest server release started on the database
-- (server.New records its own unless the recorded ones hold tables or
-- columns it lacks, and those tables exist): a process with fewer (an
-- older release still running after a migration) refuses pushes, whose
-- deletes could cascade, unlogged, into tables it does not know. schema
-- is the text form of the registry's protocol.NodeSchema, fingerprint its
-- fingerprint. One row; unused on a node.
CREATE TABLE IF NOT EXISTS sync_server_release (
    id          BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT    NOT NULL,
    schema      TEXT    NOT NULL
);
