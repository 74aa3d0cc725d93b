CREATE TABLE IF NOT EXISTS sync_content_types (
    content_type_id BIGINT NOT NULL PRIMARY KEY,
    table_name      TEXT   NOT NULL UNIQUE,
    model_name      TEXT   NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_nodes (
    node_id          INTEGER   NOT NULL PRIMARY KEY AUTOINCREMENT,
    registered       TIMESTAMP NOT NULL,
    registry_user_id TEXT,
    secret           TEXT      NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_versions (
    version_id INTEGER   NOT NULL PRIMARY KEY,
    node_id    BIGINT,
    created    TIMESTAMP NOT NULL
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_versions_node_id_idx ON sync_versions (node_id, version_id);

--bun:split

CREATE TABLE IF NOT EXISTS sync_operations (
    "order"         INTEGER NOT NULL PRIMARY KEY,
    row_id          TEXT    NOT NULL,
    content_type_id BIGINT  NOT NULL,
    command         TEXT    NOT NULL,
    version_id      BIGINT
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_pushes (
    push_id    TEXT      NOT NULL PRIMARY KEY,
    node_id    BIGINT    NOT NULL,
    version_id BIGINT,
    created    TIMESTAMP NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_push_attempts (
    push_id      TEXT      NOT NULL PRIMARY KEY,
    max_order    BIGINT    NOT NULL,
    base_version BIGINT,
    created      TIMESTAMP NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_nonces (
    node_id BIGINT    NOT NULL,
    nonce   TEXT      NOT NULL,
    seen    TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, nonce)
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_nonces_seen_idx ON sync_nonces (seen);

--bun:split

CREATE TABLE IF NOT EXISTS sync_state (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    capture    INTEGER NOT NULL DEFAULT 1,
    version_id BIGINT
);

--bun:split

INSERT OR IGNORE INTO sync_state (id, capture, version_id) VALUES (1, 1, NULL);
