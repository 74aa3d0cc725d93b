-- SQLite's log orders become AUTOINCREMENT (never reused). PostgreSQL's
-- come from a sequence (BIGSERIAL), which never reuses them: nothing to
-- do. The version keeps both dialects' histories alike.
SELECT 1;
