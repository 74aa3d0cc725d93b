-- A push whose base is older than the latest version may be rebased
-- (server.Push, docs/protocol.md "Rebase"). A push id its node gave up on
-- (marked abandoned by a pull) must never be applied, but the marks are
-- deleted by the next version; from then on this floor refuses to rebase
-- every push of the node based on the version it names or an older one:
-- a copy sent before the mark is based on one of those.
CREATE TABLE IF NOT EXISTS sync_rebase_floors (
    node_id    BIGINT NOT NULL PRIMARY KEY,
    version_id BIGINT NOT NULL
);
