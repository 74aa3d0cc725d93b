package peer_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestResyncMemory: a resynchronization takes the peer's whole state,
// and then deletes the node's rows that state lacks (older than the
// peer's horizon). The keys of the state's rows wait in a temporary table
// of the apply's transaction, not in memory, and the rows it lacks are
// read a page at a time: the apply's peak heap does not grow with the
// number of rows. For two sizes n, b holds n notes a holds too, and 50
// that a deleted and forgot; a resynchronization of b from a drops the 50
// and keeps the n. Before, every row of the state stayed in a map (3.3 MiB
// more at 30,000 rows than at 5,000, on SQLite and PostgreSQL alike). Not parallel (it measures
// the process's heap); skipped under the race detector unless
// DBSYNC_LONG=1.
func TestResyncMemory(t *testing.T) {
	if dbtest.Race() && !dbtest.Long() {
		t.Skip("under -race, DBSYNC_LONG=1 runs it")
	}
	small, large := 2_000, 12_000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			g1 := resyncHeapGrowth(t, kind, small)
			g2 := resyncHeapGrowth(t, kind, large)
			t.Logf("%s: peak live heap during the resynchronization, over the heap before it: %d KiB with %d rows, %d KiB with %d rows",
				kind, g1>>10, small, g2>>10, large)
			if g2 > g1+512<<10 {
				t.Errorf("the resynchronization's peak heap grew by %d KiB from %d to %d rows, want at most 512 KiB", (g2-g1)>>10, small, large)
			}
		})
	}
}

// TestApplyMemory: an apply of n new rows, page after page, settles each
// page's references once it is written and keeps only what is left to
// check (store.Settler: the rows deleted, references to rows not there
// yet), not the key of every row written: its peak heap does not grow
// with n. Not parallel; skipped under the race detector unless
// DBSYNC_LONG=1.
func TestApplyMemory(t *testing.T) {
	if dbtest.Race() && !dbtest.Long() {
		t.Skip("under -race, DBSYNC_LONG=1 runs it")
	}
	small, large := 2_000, 20_000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			g1 := applyHeapGrowth(t, kind, small)
			g2 := applyHeapGrowth(t, kind, large)
			t.Logf("%s: peak live heap during the apply, over the heap before it: %d KiB with %d rows, %d KiB with %d rows",
				kind, g1>>10, small, g2>>10, large)
			if g2 > g1+512<<10 {
				t.Errorf("the apply's peak heap grew by %d KiB from %d to %d rows, want at most 512 KiB", (g2-g1)>>10, small, large)
			}
		})
	}
}

// applyHeapGrowth applies a's n notes on b, empty, and returns how far
// the live heap rose over its level before the apply.
func applyHeapGrowth(t *testing.T, kind string, n int) int64 {
	a := newNode(t, kind, &peer.Config{BatchSize: 500})
	b := newNode(t, kind, nil)
	insertNotes(t, a, n)
	growth := applyMeasured(t, a, b, false)
	if got := count(t, b, "notes"); got != n {
		t.Fatalf("b holds %d notes after the apply, want %d", got, n)
	}
	return growth
}

// applyMeasured applies a's feed (its whole state when full) on b, page
// after page, and returns how far the live heap rose during the apply
// (sampled at each page, after a collection) over its level before.
func applyMeasured(t *testing.T, a, b *peer.Node, full bool) int64 {
	t.Helper()
	var peak uint64
	pos, done := peer.Position{}, false
	next := func() (*peer.Batch, error) {
		peak = max(peak, liveHeap())
		if done {
			return nil, nil
		}
		page, err := a.Changes(ctx, pos, 0, b.ID(), full)
		if err != nil {
			return nil, err
		}
		pos.Seq, pos.Epoch, done = page.Last, page.Epoch, !page.More
		return page, nil
	}
	before := liveHeap()
	if _, err := b.Apply(ctx, a.ID(), next); err != nil {
		t.Fatal(err)
	}
	peak = max(peak, liveHeap())
	return int64(peak) - int64(before)
}

// insertNotes inserts n notes into node, 1000 a statement.
func insertNotes(t *testing.T, node *peer.Node, n int) {
	t.Helper()
	notes := make([]*testmodels.Note, 0, 1000)
	for i := range n {
		notes = append(notes, newNote(fmt.Sprintf("note %d", i)))
		if len(notes) == cap(notes) || i == n-1 {
			insert(t, node, &notes)
			notes = notes[:0]
		}
	}
}

// liveHeap collects garbage and returns the live heap.
func liveHeap() uint64 {
	runtime.GC() // twice: sync.Pool's victims go in the second
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// resyncHeapGrowth sets up b holding n notes of a's and 50 a deleted and
// purged, resynchronizes b from a, checks the outcome, and returns how
// far the live heap rose over its level before the apply.
func resyncHeapGrowth(t *testing.T, kind string, n int) int64 {
	const forgotten = 50
	a := newNode(t, kind, &peer.Config{BatchSize: 500})
	b := newNode(t, kind, nil)
	insertNotes(t, a, n+forgotten)
	mustSync(t, b, a.AsPeer())
	exec(t, a, fmt.Sprintf("DELETE FROM notes WHERE id IN (SELECT id FROM notes ORDER BY body LIMIT %d)", forgotten))
	tick()
	if k, err := a.Purge(ctx, time.Millisecond); err != nil || k != forgotten {
		t.Fatalf("purge: %d, %v; want %d tombstones", k, err, forgotten)
	}
	growth := applyMeasured(t, a, b, true)
	if got := count(t, b, "notes"); got != n {
		t.Fatalf("b holds %d notes after the resynchronization, want %d", got, n)
	}
	sameLive(t, a, b)
	return growth
}
