DROP INDEX IF EXISTS sync_pushes_version_id_idx;

--bun:split

DROP TABLE IF EXISTS sync_log_floor;

--bun:split

DROP TABLE IF EXISTS sync_node_activity;
