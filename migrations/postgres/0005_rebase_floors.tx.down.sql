DROP TABLE IF EXISTS sync_rebase_floors;
