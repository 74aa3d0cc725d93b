-- The peer's tables (sync_lww*) are created by MigratePeer, only where peer
-- mode is used (migrations/peer). This version stays so that databases that
-- applied it keep a consistent history; databases created by it before keep
-- their tables.
SELECT 1;
