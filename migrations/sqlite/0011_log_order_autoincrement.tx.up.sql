-- The log's orders are never reused (AUTOINCREMENT). Without it SQLite
-- numbers a new entry one past the greatest in the table, so once the
-- entries at the top were deleted a later write took a number they had:
-- a push attempt recorded up to an order (sync_push_attempts.max_order,
-- whose settling deletes the pending entries up to it) then covered an
-- entry written after it, and the settling deleted it unpushed. SQLite
-- cannot add AUTOINCREMENT to a column: the rows are copied out, and the
-- table is created again under its name and filled back (no RENAME: the
-- capture triggers name the table, and SQLite refuses to rename a table
-- while a trigger names one that does not exist). Its counter starts past
-- every order the log or a push attempt holds. The server's indexes on
-- the log (oplog.Install's) are created again here, for a server migrated
-- by migrations.Migrate alone; a node's Install drops them. Run again, it
-- rebuilds the table again, keeping its rows.
CREATE TABLE IF NOT EXISTS sync_operations_copy (
    "order"         INTEGER NOT NULL PRIMARY KEY,
    row_id          TEXT    NOT NULL,
    content_type_id BIGINT  NOT NULL,
    command         TEXT    NOT NULL,
    version_id      BIGINT
);

--bun:split

INSERT INTO sync_operations_copy ("order", row_id, content_type_id, command, version_id)
SELECT "order", row_id, content_type_id, command, version_id FROM sync_operations;

--bun:split

DROP TABLE sync_operations;

--bun:split

CREATE TABLE sync_operations (
    "order"         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    row_id          TEXT    NOT NULL,
    content_type_id BIGINT  NOT NULL,
    command         TEXT    NOT NULL,
    version_id      BIGINT
);

--bun:split

INSERT INTO sync_operations ("order", row_id, content_type_id, command, version_id)
SELECT "order", row_id, content_type_id, command, version_id FROM sync_operations_copy;

--bun:split

DROP TABLE sync_operations_copy;

--bun:split

CREATE INDEX IF NOT EXISTS sync_operations_version_id_idx ON sync_operations (version_id);

--bun:split

CREATE INDEX IF NOT EXISTS sync_operations_row_idx ON sync_operations (content_type_id, row_id, version_id);

--bun:split

DELETE FROM sqlite_sequence WHERE name = 'sync_operations';

--bun:split

INSERT INTO sqlite_sequence (name, seq)
SELECT 'sync_operations', MAX(COALESCE((SELECT MAX("order") FROM sync_operations), 0),
                              COALESCE((SELECT MAX(max_order) FROM sync_push_attempts), 0));
