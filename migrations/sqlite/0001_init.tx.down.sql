DROP TABLE IF EXISTS sync_state;

--bun:split

DROP TABLE IF EXISTS sync_nonces;

--bun:split

DROP TABLE IF EXISTS sync_push_attempts;

--bun:split

DROP TABLE IF EXISTS sync_pushes;

--bun:split

DROP TABLE IF EXISTS sync_operations;

--bun:split

DROP TABLE IF EXISTS sync_versions;

--bun:split

DROP TABLE IF EXISTS sync_nodes;

--bun:split

DROP TABLE IF EXISTS sync_content_types;
