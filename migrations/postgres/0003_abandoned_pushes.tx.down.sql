DROP INDEX IF EXISTS sync_pushes_abandoned_idx;
