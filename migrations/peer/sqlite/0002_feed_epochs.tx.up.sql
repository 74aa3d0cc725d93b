-- Epochs of a node's feed: each opening of the node (peer.New) starts
-- one at the feed's head and ends the one before there. A position in
-- the feed is of an epoch and valid up to the epoch's end: a node
-- restored from a backup lacks the epochs, or the ends, of the positions
-- its peers read past the backup. restores counts the restores a node
-- found that way (restored_epoch: the epoch it found the last in), after
-- which it asks each peer once for its own versions too (reclaimed).
CREATE TABLE IF NOT EXISTS sync_lww_epochs (
    epoch     TEXT   NOT NULL PRIMARY KEY,
    start_seq BIGINT NOT NULL,
    end_seq   BIGINT
);

--bun:split

INSERT INTO sync_lww_epochs (epoch, start_seq) VALUES ('', 0);

--bun:split

ALTER TABLE sync_lww_node ADD COLUMN epoch TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_node ADD COLUMN restores BIGINT NOT NULL DEFAULT 0;

--bun:split

ALTER TABLE sync_lww_node ADD COLUMN restored_epoch TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN epoch TEXT NOT NULL DEFAULT '';

--bun:split

ALTER TABLE sync_lww_peers ADD COLUMN reclaimed BIGINT NOT NULL DEFAULT 0;
