package oplog

import (
	"context"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/models"
)

// PendingPage returns at most limit pending operations with order greater
// than after and at most maxOrder, oldest first: one page of an unanswered
// push attempt, for a push read a page at a time.
func PendingPage(ctx context.Context, db bun.IDB, after, maxOrder int64, limit int) ([]models.Operation, error) {
	return scanOperations(ctx, db, `SELECT "order", row_id, content_type_id, command FROM sync_operations
WHERE version_id IS NULL AND "order" > ? AND "order" <= ? ORDER BY "order" LIMIT ?`, after, maxOrder, limit)
}
