package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// largeRows is the size of each side's table in TestLargeTables: 100,000
// rows, or 2,000 (two batches each way) under the race detector and with
// -short. The SQLite
// driver is C translated to Go, so the race detector instruments the whole
// database engine and slows it more than twentyfold (20,000 rows each way
// took about two minutes).
func largeRows() int {
	if dbtest.Race() || testing.Short() {
		return 2_000
	}
	return 100_000
}

// fill inserts rows in one transaction, in multi-row statements.
func fill(t testing.TB, db *bun.DB, rows int, mk func(i int) any) {
	t.Helper()
	ctx := context.Background()
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for start := 0; start < rows; start += 1000 {
			var batch []any
			for i := start; i < min(start+1000, rows); i++ {
				batch = append(batch, mk(i))
			}
			switch batch[0].(type) {
			case *testmodels.Note:
				s := make([]*testmodels.Note, len(batch))
				for i, v := range batch {
					s[i] = v.(*testmodels.Note)
				}
				if _, err := tx.NewInsert().Model(&s).Exec(ctx); err != nil {
					return err
				}
			case *testmodels.List:
				s := make([]*testmodels.List, len(batch))
				for i, v := range batch {
					s[i] = v.(*testmodels.List)
				}
				if _, err := tx.NewInsert().Model(&s).Exec(ctx); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLargeTables sends a large table each way in one session over
// net.Pipe, which has no buffer: if both ends wrote before reading, the
// session would deadlock.
func TestLargeTables(t *testing.T) {
	t.Parallel()
	rows := largeRows()
	ctx := context.Background()
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	start := time.Now()
	// The rows are written before peer.New, which gives them identities
	// and versions in a few statements (the capture triggers would cost
	// one write each).
	dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
	for _, db := range []*bun.DB{dbA, dbB} {
		if err := testmodels.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, dbA, rows, func(i int) any {
		return &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("note %d", i), Created: created, Data: []byte{byte(i), byte(i >> 8)}}
	})
	fill(t, dbB, rows, func(i int) any { return &testmodels.List{Name: fmt.Sprintf("list %d", i)} })
	a, b := synctest.NewNodeWith(t, dbA, testmodels.All(), nil), synctest.NewNodeWith(t, dbB, testmodels.All(), nil)
	t.Logf("filled 2×%d rows in %s", rows, time.Since(start))
	start = time.Now()
	o := pipeSession(t, a, b, cfg(), cfg()).ok(t)
	t.Logf("session in %s", time.Since(start))
	o.transfers(t, rows, rows)
	s := converged(t, a, b)
	if s.Counts["notes"] != rows || s.Counts["lists"] != rows {
		t.Fatalf("counts %v, want %d notes and %d lists", s.Counts, rows, rows)
	}
	start = time.Now()
	pipeSession(t, a, b, cfg(), cfg()).ok(t).transfers(t, 0, 0)
	t.Logf("re-run in %s", time.Since(start))
}
