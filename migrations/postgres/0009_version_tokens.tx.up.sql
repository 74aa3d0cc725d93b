-- Each version's token: a random string drawn when the version is created
-- (docs/protocol.md "Version identity"). A node names the version it holds
-- by number and token; a server that lost versions (restored from a
-- backup, failed over to a standby that lacked them) and numbered new ones
-- as those it lost tells them apart by the token, and answers the node
-- repair_needed. On a node, the tokens of the versions it pulled. A
-- version without a row (created before this table) is known by number
-- only.
CREATE TABLE IF NOT EXISTS sync_version_tokens (
    version_id BIGINT NOT NULL PRIMARY KEY,
    token      TEXT   NOT NULL
);
