ALTER TABLE sync_lww_peers DROP COLUMN reclaimed;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN epoch;

--bun:split

ALTER TABLE sync_lww_node DROP COLUMN restored_epoch;

--bun:split

ALTER TABLE sync_lww_node DROP COLUMN restores;

--bun:split

ALTER TABLE sync_lww_node DROP COLUMN epoch;

--bun:split

DROP TABLE IF EXISTS sync_lww_epochs;
