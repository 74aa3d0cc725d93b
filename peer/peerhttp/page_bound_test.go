package peerhttp_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestApplyPageBounded: a page of an apply body is decoded in memory, so
// the serving node reads at most Config.MaxPageBytes of one: a page over
// it (a row larger than it, or a peer's pages of small rows with its
// MaxBatchBytes above it) is refused 413 too_large naming the bound and
// the page's first row, nothing applied. Before, a peer holding the
// secret could make the node decode a single line of its whole body (up
// to MaxBodyBytes, or MaxStagedBytes in parts) in memory.
func TestApplyPageBounded(t *testing.T) {
	t.Parallel()
	const bound = 16 << 10
	cases := []struct {
		name       string
		rows, size int
		named      bool // the error names the first row pushed
	}{
		{"one large row", 1, 64 << 10, true},
		{"a page of small rows", 200, 300, false},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				served := synctest.NewNode(t, kind, nil)
				srv := httptest.NewServer(peerhttp.NewHandler(served, &peerhttp.Config{Secret: meshSecret, MaxPageBytes: bound}))
				t.Cleanup(srv.Close)
				a := newPeerNode(t, dbtest.KindSQLite)
				synctest.InsertNotes(t, a.DB(), tc.rows, tc.size)
				var first string
				if err := a.DB().QueryRowContext(ctx, "SELECT id FROM notes ORDER BY body LIMIT 1").Scan(&first); err != nil {
					t.Fatal(err)
				}
				p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a}
				_, err := a.Sync(ctx, p)
				if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "peerhttp.Config.MaxPageBytes") || !strings.Contains(err.Error(), "notes") {
					t.Fatalf("sync: %v, want dbsync.ErrTooLarge naming peerhttp.Config.MaxPageBytes and a row of notes", err)
				}
				if tc.named && !strings.Contains(err.Error(), first) {
					t.Fatalf("sync: %v does not name the row %s", err, first)
				}
				if n := count(t, served, "SELECT count(*) FROM notes"); n != 0 {
					t.Fatalf("the serving node applied %d notes", n)
				}
			})
		}
	}
}

// TestDecodePageBound: the decoder of apply bodies stops a page at its
// bound, whatever its shape, and takes pages within it, of any number.
func TestDecodePageBound(t *testing.T) {
	t.Parallel()
	page := `{"changes":[{"table":"notes","id":"n1","hlc":1,"node":"x","row":{"body":"` + strings.Repeat("b", 1000) + `"}}],"last":1}`
	cases := []struct {
		name  string
		body  string
		max   int64
		pages int  // decoded before the end or the failure
		over  bool // fails over the bound
	}{
		{"pages within", strings.Repeat(page+"\n", 50), int64(len(page)), 50, false},
		{"pages within, no newline", strings.Repeat(page, 50), int64(len(page)), 50, false},
		{"a page over", page + "\n" + strings.Replace(page, "bbbb", "bbbbb", 1), int64(len(page)), 1, true},
		{"an endless string", `{"changes":"` + strings.Repeat("z", 1<<20), 4 << 10, 0, true},
		{"no bound", strings.Repeat(page, 3), 0, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := peerhttp.DecodeBatchesBounded(strings.NewReader(tc.body), tc.max)
			n := 0
			var err error
			for {
				var b *peer.Batch
				if b, err = next(); err != nil || b == nil {
					break
				}
				n++
			}
			var le *peer.LimitError
			if n != tc.pages || errors.As(err, &le) != tc.over || (tc.over && !errors.Is(err, dbsync.ErrTooLarge)) || (!tc.over && err != nil) {
				t.Fatalf("%d pages, then %v; want %d pages, over the bound %v", n, err, tc.pages, tc.over)
			}
		})
	}
}
