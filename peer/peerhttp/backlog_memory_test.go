//go:build linux

package peerhttp_test

import (
	"net/http/httptest"
	"runtime/debug"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestBacklogMemory: a backlog of 160 MB of rows crosses HTTP both ways
// with memory for a few pages, not for the backlog. Pulled by a SQLite
// node, the pages were all read into memory before its transaction
// opened; pushed, the body was built in memory by the sender and read
// into memory by the receiver (two copies, 256 MiB at most). The pages
// now go to spool files past 16 MiB (pull) and 1 MiB (push), and the
// receiver applies the body from its spool file a page at a time. The
// process's peak resident memory (VmHWM, reset before each step) must
// grow by less than half the backlog in each direction (443 and 986 MiB
// when the bodies were held in memory), and as much pushed in parts to a
// node whose MaxBodyBytes is 16 MiB (the parts staged in a file, the
// whole applied from it). The collector runs at GOGC 50
// meanwhile: at 100 its garbage alone took the pull to 81 MiB of a 156
// MiB backlog on a busy machine. Slow and sensitive to other tests'
// memory: DBSYNC_LONG=1, not in parallel.
func TestBacklogMemory(t *testing.T) {
	if !dbtest.Long() {
		t.Skip("DBSYNC_LONG=1 runs it")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	const rows, size = 40_000, 4 << 10
	const backlog = rows * size
	a := newPeerNode(t, dbtest.KindSQLite)
	synctest.InsertNotes(t, a.DB(), rows, size)
	serve := func(n *peer.Node, maxBody int64) string {
		srv := httptest.NewServer(peerhttp.NewHandler(n, &peerhttp.Config{Secret: meshSecret, MaxBodyBytes: maxBody}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	aURL := serve(a, 0)
	step := func(name string, sync func() (*peer.Report, error)) {
		t.Helper()
		var rep *peer.Report
		var err error
		grew := dbtest.PeakGrowth(t, func() { rep, err = sync() })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d rows (%d MB of rows), peak resident memory grew by %d MiB", name, rep.Pulled+rep.Pushed, backlog/1_000_000, grew>>20)
		if rep.Pulled+rep.Pushed != rows {
			t.Fatalf("%s: %+v, want %d rows", name, rep, rows)
		}
		if grew > backlog/2 {
			t.Errorf("%s: peak resident memory grew by %d MiB for a backlog of %d MiB: want under half", name, grew>>20, backlog>>20)
		}
	}
	// A SQLite node pulls the backlog over HTTP (its pages are read before
	// its transaction opens).
	b := newPeerNode(t, dbtest.KindSQLite)
	step("pull", func() (*peer.Report, error) {
		return b.Sync(ctx, &peerhttp.Peer{URL: aURL, Secret: meshSecret, Self: b})
	})
	// The node pushes the backlog to another over HTTP (one apply body).
	c := newPeerNode(t, dbtest.KindSQLite)
	cURL := serve(c, 0)
	step("push", func() (*peer.Report, error) {
		return a.Sync(ctx, &peerhttp.Peer{URL: cURL, Secret: meshSecret, Self: a})
	})
	// And to a node that takes it in parts of 16 MiB.
	d := newPeerNode(t, dbtest.KindSQLite)
	dURL := serve(d, 16<<20)
	step("push in parts", func() (*peer.Report, error) {
		return a.Sync(ctx, &peerhttp.Peer{URL: dURL, Secret: meshSecret, Self: a})
	})
}
