-- The log's lifecycle (server.Server.Trim, docs/protocol.md "Log
-- lifecycle"). Each node's activity: when it last made an authenticated
-- request, and the version it last said it holds (the base of its latest
-- pull or push). A node seen within the server's horizon holds the trim
-- back at that version; an older one is retired and does not.
CREATE TABLE IF NOT EXISTS sync_node_activity (
    node_id      BIGINT      NOT NULL PRIMARY KEY,
    last_seen    TIMESTAMPTZ NOT NULL,
    held_version BIGINT
);

--bun:split

-- The log floor: the versions at or below it were trimmed (their
-- operations, push ids, and all of their version rows but the latest).
-- A pull or push based on an older version is answered reset_required.
CREATE TABLE IF NOT EXISTS sync_log_floor (
    id         BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    version_id BIGINT NOT NULL
);

--bun:split

INSERT INTO sync_log_floor (id, version_id) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

--bun:split

-- Trim deletes push ids by version.
CREATE INDEX IF NOT EXISTS sync_pushes_version_id_idx ON sync_pushes (version_id);

--bun:split

-- Nodes registered before this migration hold the trim back at version 0
-- until they name their version or stay silent past the horizon: without
-- a row they would count as neither live nor retired, and the first trim
-- would leave every one of them behind (reset_required) at once.
INSERT INTO sync_node_activity (node_id, last_seen, held_version)
SELECT node_id, CURRENT_TIMESTAMP, 0 FROM sync_nodes WHERE true -- (SQLite: a WHERE before ON CONFLICT)
ON CONFLICT (node_id) DO NOTHING;
