DROP TABLE IF EXISTS sync_version_tokens;
