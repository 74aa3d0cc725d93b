package client_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestResetMemory resets a node holding n todos, of which the server
// deleted half, for two sizes n, and compares the peak live heap during
// the reset (sampled after a collection at each chunk merged and each
// page of rows the server no longer has): the server's keys and the
// node's wait in a temporary table, not in memory, so the peak does not
// grow with the database. Not parallel (it measures the process's heap);
// skipped under the race detector unless DBSYNC_LONG=1 (SQLite is about
// 20 times slower there).
func TestResetMemory(t *testing.T) {
	if dbtest.Race() && !dbtest.Long() {
		t.Skip("under -race, DBSYNC_LONG=1 runs it")
	}
	small, large := 10_000, 60_000
	if dbtest.Long() && !dbtest.Race() {
		small, large = 20_000, 160_000
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			g1 := resetHeapGrowth(t, kind, small)
			g2 := resetHeapGrowth(t, kind, large)
			t.Logf("%s: peak live heap during the reset, over the heap before it: %d KiB with %d rows, %d KiB with %d rows",
				kind, g1>>10, small, g2>>10, large)
			// Measured (no -race, 2 cores, load 9): 70 and 74 KiB on
			// SQLite, 66 and 66 KiB on PostgreSQL; with the keys held in
			// maps (before the temporary table) 359 and 2221 KiB.
			if g2 > g1+512<<10 {
				t.Errorf("the reset's peak heap grew by %d KiB from %d to %d rows, want at most 512 KiB", (g2-g1)>>10, small, large)
			}
		})
	}
}

// resetHeapGrowth sets up a node holding n todos (a repair), has the
// server delete half of them, leaves the node behind the trim, and
// returns how far the live heap rose over its level before the reset.
func resetHeapGrowth(t *testing.T, kind string, n int) int64 {
	ctx := context.Background()
	clk := dbtest.NewClock(time.Now())
	srv := synctest.NewServer(t, kind, trimConfig(clk))
	var peak uint64
	sample := func() uint64 {
		runtime.GC() // twice: sync.Pool's victims go in the second
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	a := synctest.NewClientWith(t, srv, "a", dbtest.Open(t, kind), testmodels.CreateSchema, synctest.Models(),
		&client.Config{OnProgress: func(p dbsync.Progress) {
			if p.Op == "reset" && (p.Phase == "apply" || p.Phase == "gone") {
				peak = max(peak, sample())
			}
		}})
	b := synctest.NewClient(t, srv, "b", nil)
	insertList(t, b.DB, "b's")
	for _, c := range []*synctest.Client{b, a} {
		if _, err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Written on the server without capture: rows no version carries.
	serverWrite := func(queries ...string) {
		t.Helper()
		err := srv.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
				return err
			}
			for _, q := range queries {
				if _, err := tx.ExecContext(ctx, q, n); err != nil {
					return err
				}
			}
			return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pad := strings.Repeat("x", 300)
	serverWrite("INSERT INTO lists (id, name) VALUES (1000, 'bulk')",
		`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO todos (id, list_id, title, done) SELECT 1000 + i, 1000, 'todo ' || CAST(i AS TEXT) || ' `+pad+`', false FROM s`)
	if _, err := a.Repair(ctx, nil); err != nil {
		t.Fatal(err)
	}
	serverWrite("DELETE FROM todos WHERE id % 2 = 0 AND id <= 1000 + ?")
	behindTrim(t, srv, clk, b, "UPDATE lists SET name = 'b''s, renamed' WHERE name = 'b''s'")
	before := sample()
	res, err := a.Reset(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(n - n/2 + 2); res.Rows != want {
		t.Fatalf("reset received %d rows, want %d", res.Rows, want)
	}
	if got := count(t, a.DB, "todos", ""); got != n-n/2 {
		t.Fatalf("the node holds %d todos after the reset, want %d", got, n-n/2)
	}
	return int64(peak) - int64(before)
}
