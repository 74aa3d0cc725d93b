-- Chunks of a push sent in several requests (docs/protocol.md, "Chunked
-- push"), staged until the commit request applies them in one transaction
-- and deletes them. A resent chunk replaces its copy: (node_id, push_id,
-- seq) is the key. A node stages one push at a time (a chunk of a new push
-- id deletes its others); server.Server sweeps old chunks.
CREATE TABLE IF NOT EXISTS sync_push_chunks (
    node_id    BIGINT    NOT NULL,
    push_id    TEXT      NOT NULL,
    seq        INTEGER   NOT NULL,
    digest     TEXT      NOT NULL,
    size       BIGINT    NOT NULL,
    operations INTEGER   NOT NULL,
    body       BYTEA       NOT NULL,
    created    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node_id, push_id, seq)
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_push_chunks_created_idx ON sync_push_chunks (created);

--bun:split

-- The rows each staged chunk names, one line per operation, written with
-- the chunk: the commit checks a push across its chunks (a row named by
-- two chunks, the rows its deletes leave referenced, unique values moved
-- between chunks) with queries on this table instead of holding the push.
CREATE TABLE IF NOT EXISTS sync_push_keys (
    node_id BIGINT  NOT NULL,
    push_id TEXT    NOT NULL,
    tbl     TEXT    NOT NULL,
    row_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    command TEXT    NOT NULL,
    PRIMARY KEY (node_id, push_id, tbl, row_id, seq)
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_push_keys_seq_idx ON sync_push_keys (node_id, push_id, seq);
