-- The peer mode's capture switch, apart from client/server sync's
-- (sync_state.capture): while the peer applies rows it received, its
-- capture triggers skip them, and the writes that apply causes in the
-- tables client/server sync captures (a trigger of the application's, a
-- foreign key's cascade) are still logged. SQLite's triggers read it;
-- PostgreSQL's read the transaction-local setting dbsync.peer_capture.
-- Every statement is idempotent (two processes may migrate one SQLite
-- file at once).
CREATE TABLE IF NOT EXISTS sync_lww_capture (
    id      BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    capture BOOLEAN NOT NULL DEFAULT TRUE
);

--bun:split

INSERT INTO sync_lww_capture (id, capture) VALUES (1, TRUE) ON CONFLICT (id) DO NOTHING;
