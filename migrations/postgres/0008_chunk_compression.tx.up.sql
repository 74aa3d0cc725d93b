-- A staged chunk's body is written once and read once, at the push's
-- commit. PostgreSQL's default compression of a large bytea (pglz) cost
-- about 30 ms of the server's CPU per 1.3 MB chunk; lz4 costs a fraction
-- of that for a similar size. A server built without lz4 stores the
-- bodies uncompressed instead (larger, and cheaper still in CPU).
DO $$
BEGIN
    ALTER TABLE sync_push_chunks ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE sync_push_chunks ALTER COLUMN body SET STORAGE EXTERNAL;
END
$$;
