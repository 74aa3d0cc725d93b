CREATE TABLE IF NOT EXISTS sync_content_types (
    content_type_id BIGINT NOT NULL PRIMARY KEY,
    table_name      TEXT   NOT NULL UNIQUE,
    model_name      TEXT   NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_nodes (
    node_id          BIGSERIAL   NOT NULL PRIMARY KEY,
    registered       TIMESTAMPTZ NOT NULL,
    registry_user_id TEXT,
    secret           TEXT        NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_versions (
    version_id BIGINT      NOT NULL PRIMARY KEY,
    node_id    BIGINT,
    created    TIMESTAMPTZ NOT NULL
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_versions_node_id_idx ON sync_versions (node_id, version_id);

--bun:split

CREATE TABLE IF NOT EXISTS sync_operations (
    "order"         BIGSERIAL NOT NULL PRIMARY KEY,
    row_id          TEXT      NOT NULL,
    content_type_id BIGINT    NOT NULL,
    command         CHAR(1)   NOT NULL CHECK (command IN ('i', 'u', 'd')),
    version_id      BIGINT
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_pushes (
    push_id    TEXT        NOT NULL PRIMARY KEY,
    node_id    BIGINT      NOT NULL,
    version_id BIGINT,
    created    TIMESTAMPTZ NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_push_attempts (
    push_id      TEXT        NOT NULL PRIMARY KEY,
    max_order    BIGINT      NOT NULL,
    base_version BIGINT,
    created      TIMESTAMPTZ NOT NULL
);

--bun:split

CREATE TABLE IF NOT EXISTS sync_nonces (
    node_id BIGINT      NOT NULL,
    nonce   TEXT        NOT NULL,
    seen    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node_id, nonce)
);

--bun:split

CREATE INDEX IF NOT EXISTS sync_nonces_seen_idx ON sync_nonces (seen);

--bun:split

CREATE TABLE IF NOT EXISTS sync_state (
    id         BIGINT  NOT NULL PRIMARY KEY CHECK (id = 1),
    capture    BOOLEAN NOT NULL DEFAULT TRUE,
    version_id BIGINT
);

--bun:split

INSERT INTO sync_state (id, capture, version_id) VALUES (1, TRUE, NULL) ON CONFLICT (id) DO NOTHING;
