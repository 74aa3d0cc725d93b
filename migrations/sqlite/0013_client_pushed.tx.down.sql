DROP TABLE IF EXISTS sync_client_pushed;
