package oplog

import (
	"context"
	"fmt"
	"math"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
)

// PendingPage returns at most limit pending operations with order greater
// than after and at most maxOrder, oldest first: one page of an unanswered
// push attempt, for a push read a page at a time.
func PendingPage(ctx context.Context, db bun.IDB, after, maxOrder int64, limit int) ([]models.Operation, error) {
	return scanOperations(ctx, db, limit, `SELECT "order", row_id, content_type_id, command FROM sync_operations
WHERE version_id IS NULL AND "order" > ? AND "order" <= ? ORDER BY "order" LIMIT ?`, after, maxOrder, limit)
}

// compressTable holds the pending operations sorted by row while
// CompressPaged runs; the schema qualifies it per dialect.
const compressTable = "sync_compress_tmp"

// CompressPaged is Compress of every pending operation for a log too large
// to hold in memory: it copies the pending operations, sorted by row, into
// a temporary table, then compresses them about page at a time, each page
// holding every operation of its rows (the rules act on one row's
// operations at a time), and writes the result as Compress does. Run it in
// a transaction. It returns how many operations are kept and the greatest
// order kept (math.MinInt64 when none is).
func CompressPaged(ctx context.Context, db bun.IDB, reg *dbsync.Registry, page int) (kept int, maxOrder int64, err error) {
	kind, err := dialect.Of(db)
	if err != nil {
		return 0, 0, err
	}
	seq := "INTEGER PRIMARY KEY"
	if kind == dialect.Postgres {
		seq = "BIGSERIAL PRIMARY KEY"
	}
	tmp, err := dialect.TempTable(ctx, db, compressTable, `seq `+seq+`, "order" BIGINT NOT NULL, row_id TEXT NOT NULL,
content_type_id BIGINT NOT NULL, command TEXT NOT NULL`)
	if err != nil {
		return 0, 0, fmt.Errorf("sort pending operations: %w", err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+tmp+` ("order", row_id, content_type_id, command)
SELECT "order", row_id, content_type_id, command FROM sync_operations WHERE version_id IS NULL
ORDER BY content_type_id, row_id, "order"`); err != nil {
		return 0, 0, fmt.Errorf("sort pending operations: %w", err)
	}
	defer func() {
		if _, derr := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+tmp); derr != nil && err == nil {
			err = fmt.Errorf("drop %s: %w", compressTable, derr)
		}
	}()
	var last *int64
	if err := db.NewRaw("SELECT MAX(seq) FROM "+tmp).Scan(ctx, &last); err != nil {
		return 0, 0, fmt.Errorf("sort pending operations: %w", err)
	}
	maxOrder = math.MinInt64
	if last == nil {
		return 0, maxOrder, nil
	}
	var carry []models.Operation // the last row of a page, which may go on in the next
	for after := int64(0); after < *last; after += int64(page) {
		rows, err := scanOperations(ctx, db, page, `SELECT "order", row_id, content_type_id, command FROM `+tmp+`
WHERE seq > ? AND seq <= ? ORDER BY seq`, after, after+int64(page))
		if err != nil {
			return 0, 0, err
		}
		ops := append(carry, rows...)
		carry = nil
		if after+int64(page) < *last && len(ops) > 0 {
			k := objectKey{ops[len(ops)-1].ContentTypeID, ops[len(ops)-1].RowID}
			i := len(ops)
			for i > 0 && (objectKey{ops[i-1].ContentTypeID, ops[i-1].RowID}) == k {
				i--
			}
			carry = append([]models.Operation(nil), ops[i:]...)
			ops = ops[:i]
		}
		n, m, err := compressPage(ctx, db, reg, ops)
		if err != nil {
			return 0, 0, err
		}
		kept, maxOrder = kept+n, max(maxOrder, m)
	}
	n, m, err := compressPage(ctx, db, reg, carry)
	if err != nil {
		return 0, 0, err
	}
	return kept + n, max(maxOrder, m), nil
}

// compressPage compresses and writes the operations of some rows (all of
// each row's); it returns how many are kept and the greatest order kept.
func compressPage(ctx context.Context, db bun.IDB, reg *dbsync.Registry, ops []models.Operation) (int, int64, error) {
	if len(ops) == 0 {
		return 0, math.MinInt64, nil
	}
	exists, err := existence(ctx, db, reg, ops, nil)
	if err != nil {
		return 0, 0, err
	}
	keep, drop := CompressLocal(ops,
		func(ct int64, row string) bool { return exists[objectKey{ct, row}] },
		func(ct int64) bool { return reg.ByContentType(ct) != nil })
	keep, drop = dropUnsendable(keep, drop)
	if err := writeCompressed(ctx, db, ops, keep, drop); err != nil {
		return 0, 0, err
	}
	if len(keep) == 0 {
		return 0, math.MinInt64, nil
	}
	return len(keep), keep[len(keep)-1].Order, nil
}
