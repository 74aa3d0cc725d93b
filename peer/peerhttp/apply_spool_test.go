package peerhttp_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestApplyBodySpooled: a push's apply body over 1 MiB is written to a
// file in Peer.SpoolDir while it is hashed, sent from there, and applied
// by the receiver from its own spool file a page at a time (before, both
// ends held it whole in memory); a smaller one stays in memory. A
// SpoolDir that does not exist shows which: the small push goes through,
// the large one fails naming the spool, and with a real directory it is
// applied whole, leaving no file behind.
func TestApplyBodySpooled(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := newPeerNode(t, kind)
			c := newPeerNode(t, kind)
			srv := httptest.NewServer(peerhttp.NewHandler(c, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			insert := func(n, size int) {
				t.Helper()
				notes := make([]*testmodels.Note, n)
				for i := range notes {
					notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprint(i, strings.Repeat("s", size)),
						Created: time.Now().UTC().Truncate(time.Microsecond)}
				}
				if _, err := a.DB().NewInsert().Model(&notes).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			missing := filepath.Join(t.TempDir(), "missing")
			to := func(dir string) *peerhttp.Peer {
				return &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, SpoolDir: dir}
			}
			// No page at all: an empty body, sent with a length of 0.
			if n, err := to(missing).Apply(ctx, a.ID(), func() (*peer.Batch, error) { return nil, nil }); err != nil || n != 0 {
				t.Fatalf("empty apply: %d, %v", n, err)
			}
			insert(10, 1000)
			if rep, err := a.Sync(ctx, to(missing)); err != nil || rep.Pushed != 10 {
				t.Fatalf("small push: %+v, %v", rep, err)
			}
			insert(300, 8<<10) // 2.4 MB
			if _, err := a.Sync(ctx, to(missing)); err == nil || !strings.Contains(err.Error(), "spool") {
				t.Fatalf("large push with a missing spool directory: %v, want a spool error", err)
			}
			dir := t.TempDir()
			if rep, err := a.Sync(ctx, to(dir)); err != nil || rep.Pushed != 300 {
				t.Fatalf("large push: %+v, %v", rep, err)
			}
			if n := peerCount(t, c, "notes"); n != 310 {
				t.Fatalf("the receiver holds %d notes, want 310", n)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Fatalf("spool directory after the push: %d entries, %v", len(entries), err)
			}
		})
	}
}
