-- The schema a node announced in its latest pull or repair (text form of
-- protocol.NodeSchema): when the application's own schema gains columns or
-- tables, the node's next pull asks the server to backfill them
-- (docs/protocol.md "Schema"). One row; unused on a server.
CREATE TABLE IF NOT EXISTS sync_node_schema (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    announced TEXT    NOT NULL
);
