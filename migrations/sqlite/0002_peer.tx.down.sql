-- Drops the peer's tables that earlier versions of this migration created
-- (DropAll rolls the peer set back first; nothing is left then).
DROP TABLE IF EXISTS sync_lww_nonces;

--bun:split

DROP TABLE IF EXISTS sync_lww_peers;

--bun:split

DROP TABLE IF EXISTS sync_lww_node;

--bun:split

DROP TABLE IF EXISTS sync_lww;
