package dialect_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestAdvanceSequence: the key sequence of a table moves to the value
// given, also for a table that never had a row (SQLite's sqlite_sequence
// has no entry for it yet) and beyond the table's greatest key
// (PostgreSQL), and never back.
func TestAdvanceSequence(t *testing.T) {
	type seqRow struct {
		bun.BaseModel `bun:"table:seq_rows"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		if _, err := db.NewCreateTable().Model((*seqRow)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		insert := func(want int64) {
			t.Helper()
			r := &seqRow{Name: "x"}
			if _, err := db.NewInsert().Model(r).Returning("id").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if r.ID != want {
				t.Fatalf("inserted id %d, want %d", r.ID, want)
			}
		}
		for _, step := range []struct {
			to   int64
			next int64
		}{
			{41, 42}, // an empty table
			{10, 43}, // never back
			{99, 100},
		} {
			if err := dialect.AdvanceSequence(ctx, db, "seq_rows", "id", step.to); err != nil {
				t.Fatal(err)
			}
			insert(step.next)
		}
	})
}
