-- The schema (registry fingerprint) of the server process started last
-- (server.New): a process started with other models (an older release
-- still running after a migration) refuses to write pushes, whose
-- deletes could cascade into tables it does not know, unlogged. One row;
-- unused on a node.
CREATE TABLE IF NOT EXISTS sync_server_release (
    id     BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    schema TEXT    NOT NULL
);
