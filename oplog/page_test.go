package oplog_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

var errRollback = errors.New("roll back")

// TestCompressPaged: compressing a page of rows at a time leaves the log
// Compress leaves, whatever the page size (rows with several operations
// across page boundaries, C5 rewrites, C7 drops), and reports the count
// and greatest order kept.
func TestCompressPaged(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		exec(t, db,
			"INSERT INTO todos (id, list_id, title, done) VALUES (4, 1, 'd', false)", // C1
			"UPDATE todos SET title = 'd2' WHERE id = 4",
			"UPDATE todos SET title = 'd3' WHERE id = 4",
			"UPDATE todos SET done = true WHERE id = 1", // C3
			"UPDATE todos SET title = 'a2' WHERE id = 1",
			"INSERT INTO todos (id, list_id, title, done) VALUES (5, 2, 'e', false)", // C2
			"DELETE FROM todos WHERE id = 5",
			"UPDATE todos SET title = 'b2' WHERE id = 2", // C4
			"DELETE FROM todos WHERE id = 2",
			"DELETE FROM todos WHERE id = 3", // C5: d i → u
			"INSERT INTO todos (id, list_id, title, done) VALUES (3, 2, 'c2', false)",
			"UPDATE lists SET name = 'work2' WHERE id = 2",
			"INSERT INTO lists (id, name) VALUES (7, 'x')", // a single insert
		)
		want, err := oplog.Compressed(t.Context(), db, b.reg, math.MinInt64)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 6 {
			t.Fatalf("Compressed kept %d operations, want 6", len(want))
		}
		for _, page := range []int{1, 2, 3, 5, 1000} {
			err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
				n, maxOrder, err := oplog.CompressPaged(ctx, tx, b.reg, page)
				if err != nil {
					return err
				}
				var got []models.Operation
				if err := tx.NewSelect().Model(&got).Where("version_id IS NULL").OrderExpr(`"order"`).Scan(ctx); err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					t.Errorf("page %d: log %v, want %v", page, got, want)
				}
				if n != len(want) || maxOrder != want[len(want)-1].Order {
					t.Errorf("page %d: kept %d up to %d, want %d up to %d", page, n, maxOrder, len(want), want[len(want)-1].Order)
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("page %d: %v", page, err)
			}
		}
		// An empty log.
		exec(t, db, "DELETE FROM sync_operations")
		err = db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
			n, maxOrder, err := oplog.CompressPaged(ctx, tx, b.reg, 10)
			if err == nil && (n != 0 || maxOrder != math.MinInt64) {
				t.Errorf("empty log: %d, %d", n, maxOrder)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
