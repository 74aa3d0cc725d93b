DROP TABLE IF EXISTS sync_lww_cursor_epochs;

--bun:split

DROP TABLE IF EXISTS sync_lww_feed;

--bun:split

DROP TABLE IF EXISTS sync_lww_epochs;
