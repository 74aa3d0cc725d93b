DROP TABLE IF EXISTS sync_push_chunks;
