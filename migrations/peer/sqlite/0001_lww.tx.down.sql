DROP TABLE IF EXISTS sync_lww_nonces;

--bun:split

DROP TABLE IF EXISTS sync_lww_peers;

--bun:split

DROP TABLE IF EXISTS sync_lww_node;

--bun:split

DROP TABLE IF EXISTS sync_lww;
