ALTER TABLE sync_lww_peers DROP COLUMN epoch;

--bun:split

ALTER TABLE sync_lww_node DROP COLUMN epoch;

--bun:split

ALTER TABLE sync_lww_node DROP COLUMN restores;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN reclaimed;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN mark_node;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN mark_hlc;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN mark_id;

--bun:split

ALTER TABLE sync_lww_peers DROP COLUMN mark_table;
