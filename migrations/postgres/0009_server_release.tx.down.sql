DROP TABLE IF EXISTS sync_server_release;
