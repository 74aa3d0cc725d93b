-- A node's tracked tables as its latest pull, repair, reset or
-- registration left them (one row a table; unused on a server). pulled:
-- the node holds every row of the table the server lets it read; false
-- when its release did not pull the table (push-only), or when the
-- server stopped holding the node to part of it (scoped) without sending
-- the rows it lacked: a release that pulls such a table asks its next
-- pull to backfill it whole. scoped: the latest pull header named the
-- table in scoped, so the node lists the keys it holds of it in its next
-- pull, in a later process too (docs/protocol.md "POST BASE/pull").
CREATE TABLE IF NOT EXISTS sync_node_tables (
    name   TEXT    NOT NULL PRIMARY KEY,
    pulled BOOLEAN NOT NULL,
    scoped BOOLEAN NOT NULL
);
