DROP TABLE IF EXISTS sync_push_keys;

--bun:split

DROP TABLE IF EXISTS sync_push_chunks;
