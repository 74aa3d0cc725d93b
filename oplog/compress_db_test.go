package oplog_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// exec runs statements, failing the test on the first error.
func exec(t *testing.T, db bun.IDB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// quietly runs fn in a transaction with capture switched off, as dbsync's
// own writes do: the rows change but nothing is logged.
func quietly(t *testing.T, db *bun.DB, fn func(ctx context.Context, tx bun.Tx) error) {
	t.Helper()
	err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
			return err
		}
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tagged runs queries in a transaction and gives the operations they log
// a version, as a server does for a push.
func tagged(t *testing.T, db *bun.DB, version int64, queries ...string) {
	t.Helper()
	err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		var before int64
		if err := tx.NewRaw(`SELECT COALESCE(MAX("order"), 0) FROM sync_operations`).Scan(ctx, &before); err != nil {
			return err
		}
		exec(t, tx, queries...)
		_, err := tx.NewUpdate().Model((*models.Operation)(nil)).Set("version_id = ?", version).
			Where(`"order" > ? AND version_id IS NULL`, before).Exec(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// compress runs oplog.Compress in a transaction, after checking that
// oplog.Compressed foretells its result and writes nothing.
func (b *bundle) compress(t *testing.T, reg *dbsync.Registry, afterOrder int64) []models.Operation {
	t.Helper()
	before := b.pending(t)
	view, err := oplog.Compressed(t.Context(), b.db, reg, afterOrder)
	if err != nil {
		t.Fatalf("Compressed: %v", err)
	}
	if after := b.pending(t); !slices.Equal(after, before) {
		t.Fatalf("Compressed wrote to the log:\nbefore %v\nafter  %v", before, after)
	}
	var keep []models.Operation
	err = b.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		keep, err = oplog.Compress(ctx, tx, reg, afterOrder)
		return err
	})
	if err != nil {
		t.Fatalf("Compress: %v", err)
	}
	if !slices.Equal(view, keep) {
		t.Fatalf("Compressed %v, Compress kept %v", view, keep)
	}
	return keep
}

// pending reads every operation with no version, oldest first.
func (b *bundle) pending(t *testing.T) []models.Operation {
	t.Helper()
	var ops []models.Operation
	if err := b.db.NewSelect().Model(&ops).Where("version_id IS NULL").OrderExpr(`"order"`).Scan(t.Context()); err != nil {
		t.Fatal(err)
	}
	return ops
}

// allOrders returns the order of every logged operation, oldest first.
func (b *bundle) allOrders(t *testing.T) []int64 {
	t.Helper()
	var out []int64
	if err := b.db.NewSelect().Model((*models.Operation)(nil)).Column("order").OrderExpr(`"order"`).Scan(t.Context(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCompress(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		note := &testmodels.Note{ID: uuid.MustParse("0F6D6F7A-3C1B-4F7E-9C55-2B1A8E0D4C33"), Body: "n", Created: time.Now()}
		exec(t, db,
			"INSERT INTO todos (id, list_id, title, done) VALUES (4, 1, 'd', false)", // C1: i u u → i
			"UPDATE todos SET title = 'd2' WHERE id = 4",
			"UPDATE todos SET title = 'd3' WHERE id = 4",
			"UPDATE todos SET done = true WHERE id = 1", // C3: u u → newest u
			"UPDATE todos SET title = 'a2' WHERE id = 1",
			"INSERT INTO todos (id, list_id, title, done) VALUES (5, 2, 'e', false)", // C2: i d → nothing
			"DELETE FROM todos WHERE id = 5",
			"UPDATE todos SET title = 'b2' WHERE id = 2", // C4: u d → d
			"DELETE FROM todos WHERE id = 2",
		)
		if _, err := db.NewInsert().Model(note).Exec(ctx); err != nil { // C1 on a UUID key
			t.Fatal(err)
		}
		note.Body = "n2"
		if _, err := db.NewUpdate().Model(note).WherePK().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "UPDATE lists SET name = 'work2' WHERE id = 2") // single u
		before := b.pending(t)
		if len(before) != 12 {
			t.Fatalf("logged %q before compression, want 12 operations", b.logged(t))
		}

		keep := b.compress(t, b.reg, math.MinInt64)
		want := []string{"todos:i:4", "todos:u:1", "todos:d:2", "notes:i:" + note.ID.String(), "lists:u:2"}
		if got := b.logged(t); !slices.Equal(got, want) {
			t.Fatalf("log after compression %q, want %q", got, want)
		}
		// Compress returns what remains, and the newest update of todo 1.
		after := b.pending(t)
		if !slices.Equal(orders(keep), orders(after)) {
			t.Fatalf("Compress returned orders %v, the log holds %v", orders(keep), orders(after))
		}
		if got, want := []int64{after[0].Order, after[1].Order}, []int64{before[0].Order, before[4].Order}; !slices.Equal(got, want) {
			t.Fatalf("kept orders %v for the insert of todo 4 and the update of todo 1, want %v", got, want)
		}
		// Compressing again changes nothing.
		if again := b.compress(t, b.reg, math.MinInt64); !slices.Equal(orders(again), orders(after)) {
			t.Fatalf("second Compress kept %v, want %v", orders(again), orders(after))
		}
	})
}

func TestCompressEmpty(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		if keep := b.compress(t, b.reg, math.MinInt64); len(keep) != 0 {
			t.Fatalf("Compress of an empty log kept %v", keep)
		}
	})
}

// TestCompressRowGone checks C7: an insert or update whose row was deleted
// without being logged (capture off, as when a pull applies a delete) is
// dropped.
func TestCompressRowGone(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		note := &testmodels.Note{ID: uuid.New(), Body: "n", Created: time.Now()}
		if _, err := db.NewInsert().Model(note).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		exec(t, db,
			"INSERT INTO todos (id, list_id, title, done) VALUES (4, 1, 'd', false)",
			"UPDATE todos SET title = 'a2' WHERE id = 1",
			"UPDATE todos SET title = 'c2' WHERE id = 3",
		)
		quietly(t, db, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.ExecContext(ctx, "DELETE FROM todos WHERE id IN (1, 4)"); err != nil {
				return err
			}
			_, err := tx.NewDelete().Model(note).WherePK().Exec(ctx)
			return err
		})
		want := []string{"notes:i:" + note.ID.String(), "todos:i:4", "todos:u:1", "todos:u:3"}
		if got := b.logged(t); !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
		keep := b.compress(t, b.reg, math.MinInt64)
		if got, want := b.logged(t), []string{"todos:u:3"}; !slices.Equal(got, want) {
			t.Fatalf("log after compression %q, want %q", got, want)
		}
		if len(keep) != 1 || keep[0].RowID != "3" || keep[0].Command != models.Update {
			t.Fatalf("Compress returned %+v", keep)
		}
	})
}

// TestCompressUntracked checks C6: operations of a table the registry does
// not track go through the pattern rules only.
func TestCompressUntracked(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		exec(t, db,
			"INSERT INTO todos (id, list_id, title, done) VALUES (4, 1, 'd', false)",
			"UPDATE todos SET title = 'd2' WHERE id = 4",
			"UPDATE lists SET name = 'h' WHERE id = 1",
			"UPDATE lists SET name = 'h2' WHERE id = 1",
		)
		quietly(t, db, func(ctx context.Context, tx bun.Tx) error {
			_, err := tx.ExecContext(ctx, "DELETE FROM todos WHERE id = 4")
			return err
		})
		listsOnly, err := dbsync.Track(db, (*testmodels.List)(nil))
		if err != nil {
			t.Fatal(err)
		}
		b.compress(t, listsOnly, math.MinInt64)
		// C1 drops the update of todo 4; C7 would drop its insert too, but
		// todos is not tracked by listsOnly.
		if got, want := b.logged(t), []string{"todos:i:4", "lists:u:1"}; !slices.Equal(got, want) {
			t.Fatalf("log after compression %q, want %q", got, want)
		}
		b.compress(t, b.reg, math.MinInt64)
		if got, want := b.logged(t), []string{"lists:u:1"}; !slices.Equal(got, want) {
			t.Fatalf("log after compression with todos tracked %q, want %q", got, want)
		}
	})
}

// TestCompressBounds checks that Compress leaves alone the operations at or
// below afterOrder and those that carry a version.
func TestCompressBounds(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		up := func(title string) string { return "UPDATE todos SET title = '" + title + "' WHERE id = 1" }
		exec(t, db, up("1"), up("2"))
		tagged(t, db, 7, up("3"), up("4"))
		exec(t, db, up("5"), up("6"))
		all := b.allOrders(t)
		if len(all) != 6 {
			t.Fatalf("logged %q, want 6 operations", b.logged(t))
		}

		b.compress(t, b.reg, all[1])
		want := []string{"todos:u:1", "todos:u:1", "todos:u:1:v7", "todos:u:1:v7", "todos:u:1"}
		if got := b.logged(t); !slices.Equal(got, want) {
			t.Fatalf("after Compress(afterOrder=%d): %q, want %q", all[1], got, want)
		}
		if got, want := b.allOrders(t), []int64{all[0], all[1], all[2], all[3], all[5]}; !slices.Equal(got, want) {
			t.Fatalf("after Compress(afterOrder=%d): orders %v, want %v", all[1], got, want)
		}

		b.compress(t, b.reg, math.MinInt64)
		if got, want := b.allOrders(t), []int64{all[2], all[3], all[5]}; !slices.Equal(got, want) {
			t.Fatalf("after Compress(all): orders %v (%q), want %v", got, b.logged(t), want)
		}
	})
}

func TestPending(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		tagged(t, db, 2, "UPDATE todos SET title = 'w' WHERE id = 3")
		exec(t, db, "UPDATE todos SET title = 'x' WHERE id = 1")
		tagged(t, db, 3, "UPDATE todos SET title = 'y' WHERE id = 2")
		exec(t, db,
			"INSERT INTO lists (name) VALUES ('new')",
			"DELETE FROM todos WHERE id = 3",
		)
		all := b.allOrders(t)
		if len(all) != 5 {
			t.Fatalf("logged %q, want 5 operations", b.logged(t))
		}
		// Store the oldest pending operation again: PostgreSQL then keeps it
		// after the others, so only ORDER BY returns it first.
		first := &models.Operation{Order: all[1]}
		if err := db.NewSelect().Model(first).WherePK().Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewDelete().Model(first).WherePK().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewInsert().Model(first).Exec(ctx); err != nil {
			t.Fatal(err)
		}

		ops, err := oplog.Pending(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := orders(ops), []int64{all[1], all[3], all[4]}; !slices.Equal(got, want) {
			t.Fatalf("Pending = %v, want %v", got, want)
		}
		if ops[0].RowID != "1" || ops[0].Command != models.Update ||
			ops[1].ContentTypeID != dbsync.ContentTypeID("lists") || ops[1].Command != models.Insert ||
			ops[2].RowID != "3" || ops[2].Command != models.Delete {
			t.Fatalf("Pending = %+v", ops)
		}

		tests := []struct {
			maxOrder int64
			want     []int64
		}{
			{all[4] + 100, []int64{all[1], all[3], all[4]}},
			{all[4], []int64{all[1], all[3], all[4]}},
			{all[3], []int64{all[1], all[3]}},
			{all[2], []int64{all[1]}}, // all[2] has a version
			{all[1], []int64{all[1]}},
			{all[0], nil},
			{0, nil},
			{-1, nil},
		}
		for _, tc := range tests {
			ops, err := oplog.PendingUpTo(ctx, db, tc.maxOrder)
			if err != nil {
				t.Fatal(err)
			}
			if got := orders(ops); !slices.Equal(got, nonNil(tc.want)) {
				t.Errorf("PendingUpTo(%d) = %v, want %v", tc.maxOrder, got, tc.want)
			}
			for _, op := range ops {
				if op.VersionID != nil {
					t.Errorf("PendingUpTo(%d) returned %+v, which has a version", tc.maxOrder, op)
				}
			}
		}
	})
}
