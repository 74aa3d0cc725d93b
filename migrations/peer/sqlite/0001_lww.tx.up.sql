CREATE TABLE IF NOT EXISTS sync_lww (
    content_type_id BIGINT  NOT NULL,
    row_id          TEXT    NOT NULL,
    hlc             BIGINT  NOT NULL,
    node            TEXT    NOT NULL,
    deleted         INTEGER NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (content_type_id, row_id)
);

--bun:split

CREATE UNIQUE INDEX IF NOT EXISTS sync_lww_seq_idx ON sync_lww (seq);

--bun:split

CREATE TABLE IF NOT EXISTS sync_lww_node (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    node        TEXT    NOT NULL,
    hlc         BIGINT  NOT NULL,
    seq         BIGINT  NOT NULL,
    purged_seq  BIGINT  NOT NULL DEFAULT 0,
    purged_hlc  BIGINT  NOT NULL DEFAULT 0
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_lww_peers (
    peer       TEXT      NOT NULL PRIMARY KEY,
    pulled_seq BIGINT    NOT NULL,
    synced     TIMESTAMP NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_lww_nonces (
    peer  TEXT      NOT NULL,
    nonce TEXT      NOT NULL,
    seen  TIMESTAMP NOT NULL,
    PRIMARY KEY (peer, nonce)
);
