-- The log's orders may be reused again once its top entries are deleted.
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
    "order"         INTEGER NOT NULL PRIMARY KEY,
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
