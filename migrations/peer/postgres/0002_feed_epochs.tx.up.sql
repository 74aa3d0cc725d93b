-- Epochs of a node's feed: each opening of the node (peer.New) starts
-- one at the feed's head and ends the one before there. A position in
-- the feed is of an epoch and valid up to the epoch's end: a node
-- restored from a backup lacks the epochs, or the ends, of the positions
-- its peers read past the backup; a position without an epoch (read
-- before this migration) is not checked. Every statement is idempotent
-- (two processes may migrate one SQLite file at once).
CREATE TABLE IF NOT EXISTS sync_lww_epochs (
    epoch     TEXT   NOT NULL PRIMARY KEY,
    start_seq BIGINT NOT NULL,
    end_seq   BIGINT
);

--bun:split

-- The feed's current epoch; the restores the node found (a peer's
-- position past what its feed holds), restored_epoch the epoch it found
-- the last in: it then asks each peer once for its own versions too.
CREATE TABLE IF NOT EXISTS sync_lww_feed (
    id             BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch          TEXT    NOT NULL,
    restores       BIGINT  NOT NULL,
    restored_epoch TEXT    NOT NULL
);

--bun:split

INSERT INTO sync_lww_feed (id, epoch, restores, restored_epoch) VALUES (1, '', 0, '') ON CONFLICT (id) DO NOTHING;

--bun:split

-- Per peer: the epoch of the peer's feed the cursor (sync_lww_peers) was
-- read in, and the restores of this node answered by a pull of that
-- peer's whole feed with this node's own versions.
CREATE TABLE IF NOT EXISTS sync_lww_cursor_epochs (
    peer      TEXT   NOT NULL PRIMARY KEY,
    epoch     TEXT   NOT NULL,
    reclaimed BIGINT NOT NULL
);
