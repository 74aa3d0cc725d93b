-- Push ids marked abandoned (version_id IS NULL) are few and short-lived:
-- every new version deletes them (server.Push, server.Seal), and a pull
-- counts a node's marks. This index keeps both cheap on a sync_pushes that
-- holds one row per version.
CREATE INDEX IF NOT EXISTS sync_pushes_abandoned_idx ON sync_pushes (node_id) WHERE version_id IS NULL;
