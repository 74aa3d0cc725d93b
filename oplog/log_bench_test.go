package oplog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// BenchmarkLog logs 10,000 operations (a server push's log) in one
// transaction, interleaved, three ways, and reports each per operation
// against raw, the database doing the same writes itself (bun's bulk
// insert, 1000 rows per statement, as cmd/dbsync-bench's baseline):
// literal is oplog's multi-row literal INSERT, log is oplog.Log (the
// literal on SQLite, unnest of array parameters on PostgreSQL), applytx
// is oplog.Log in a transaction of dialect.ApplyTx, as the server's
// (COPY on PostgreSQL). On SQLite
// under the server's two log indexes, prepared statements were measured
// here at 1.0-1.1× raw CPU (single-row or 100-row), the literal at
// 0.84-0.89×. Run it with -benchtime=1x or Nx; the
// metrics are the best round's, so compare CPU (-cpu-ns/op) on a busy
// machine (the PostgreSQL server's CPU is not in it: compare wall time
// there).
func BenchmarkLog(b *testing.B) {
	const n = 10000
	for _, kind := range dbtest.Kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			db := insertDB(b, kind, true)
			version := int64(7)
			ops := make([]models.Operation, n)
			for i := range ops {
				ops[i] = models.Operation{RowID: fmt.Sprint(i + 1), ContentTypeID: int64(1 + i%3), Command: models.Insert, VersionID: &version}
			}
			empty := func() error {
				_, err := db.ExecContext(ctx, "DELETE FROM sync_operations")
				return err
			}
			inTx := func(fn func(tx bun.Tx) error) func() error {
				return func() error {
					return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return fn(tx) })
				}
			}
			dbtest.Interleave(b, n, "op", []dbtest.Variant{
				{Name: "raw", Setup: empty, Run: inTx(func(tx bun.Tx) error {
					for start := 0; start < n; start += 1000 {
						batch := ops[start:min(start+1000, n)]
						if _, err := tx.NewInsert().Model(&batch).Exec(ctx); err != nil {
							return err
						}
					}
					return nil
				})},
				{Name: "literal", Setup: empty, Run: inTx(func(tx bun.Tx) error { return oplog.LogLiterals(ctx, tx, ops) })},
				{Name: "log", Setup: empty, Run: inTx(func(tx bun.Tx) error { return oplog.Log(ctx, tx, ops) })},
				{Name: "applytx", Setup: empty, Run: func() error {
					return dialect.ApplyTx(ctx, db, func(ctx context.Context, tx bun.Tx) error { return oplog.Log(ctx, tx, ops) })
				}},
			})
		})
	}
}
