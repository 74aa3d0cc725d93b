DROP TABLE IF EXISTS sync_node_tables;
