-- Marks: the version a peer's feed held at the cursor, which that peer
-- checks when asked for its feed after the cursor (a node restored from a
-- backup lacks it); the restores a node detected that way, after which it
-- asks each peer once for its own versions too; the feed's epoch, which a
-- detected restore renews, and the epoch of each cursor.
ALTER TABLE sync_lww_peers ADD COLUMN mark_table TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN mark_id TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN mark_hlc BIGINT NOT NULL DEFAULT 0;

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN mark_node TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN reclaimed BIGINT NOT NULL DEFAULT 0;

--bun:split

ALTER TABLE sync_lww_node ADD COLUMN restores BIGINT NOT NULL DEFAULT 0;

--bun:split

ALTER TABLE sync_lww_node ADD COLUMN epoch TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
