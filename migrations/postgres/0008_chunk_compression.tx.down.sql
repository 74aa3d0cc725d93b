ALTER TABLE sync_push_chunks ALTER COLUMN body SET COMPRESSION default;

--bun:split

ALTER TABLE sync_push_chunks ALTER COLUMN body SET STORAGE EXTENDED;
