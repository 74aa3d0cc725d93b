package peerhttp_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestPageUnderMaxAnswer: every row is far below Peer.MaxAnswer, but a
// page of BatchSize rows of the served node's feed would be over it: its
// pages end at its peer.Config.MaxBatchBytes, and a pull gets through.
// Before, every sync failed on the answer's size.
func TestPageUnderMaxAnswer(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			served := synctest.NewNode(t, kind, &peer.Config{MaxBatchBytes: 128 << 10})
			srv := httptest.NewServer(peerhttp.NewHandler(served, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			a := newPeerNode(t, dbtest.KindSQLite)
			big := strings.Repeat("x", 4<<10)
			notes := make([]*testmodels.Note, 200)
			for i := range notes {
				notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("%d %s", i, big), Created: time.Now().UTC().Truncate(time.Microsecond)}
			}
			if _, err := served.DB().NewInsert().Model(&notes).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, MaxAnswer: 256 << 10}
			var err error
			for range 3 {
				if _, err = a.Sync(ctx, p); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("every sync fails: %v", err)
			}
		})
	}
}

// TestRowOverMaxAnswer: a row of the served node larger than the puller's
// Peer.MaxAnswer can never be pulled (a page holds at least one row).
// Every sync fails at once with a *peer.LimitError naming the bound and
// the row, nothing applied; pages of small rows over the bound (the
// served node's MaxBatchBytes above it) are told apart, with no row
// alone at fault; the puller's own changes still reach the peer. Before,
// the error named neither the row nor whether one row was at fault, was
// not dbsync.ErrTooLarge, and the sync stopped before the push.
func TestRowOverMaxAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		rows, size int
		row        bool // one row alone passes the bound
	}{
		{"one large row", 1, 8 << 10, true},
		{"pages of small rows", 40, 200, false},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				served := synctest.NewNode(t, kind, nil)
				srv := httptest.NewServer(peerhttp.NewHandler(served, &peerhttp.Config{Secret: meshSecret}))
				t.Cleanup(srv.Close)
				synctest.InsertNotes(t, served.DB(), tc.rows, tc.size)
				var first string
				if err := served.DB().QueryRowContext(ctx, "SELECT id FROM notes ORDER BY body LIMIT 1").Scan(&first); err != nil {
					t.Fatal(err)
				}
				a := newPeerNode(t, dbtest.KindSQLite)
				mine := &testmodels.Note{ID: uuid.New(), Body: "from the puller", Created: time.Now().UTC().Truncate(time.Microsecond)}
				if _, err := a.DB().NewInsert().Model(mine).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				const limit = 4 << 10
				p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, MaxAnswer: limit}
				for range 2 { // the same each time
					_, err := a.Sync(ctx, p)
					var le *peer.LimitError
					if !errors.As(err, &le) || !errors.Is(err, dbsync.ErrTooLarge) || !errors.Is(err, dbsync.ErrBadResponse) {
						t.Fatalf("sync: %v, want a *peer.LimitError (dbsync.ErrTooLarge, dbsync.ErrBadResponse)", err)
					}
					if le.Limit != "peerhttp.Peer.MaxAnswer" || le.Max != limit || le.Row != tc.row || le.Table != "notes" {
						t.Fatalf("sync: %+v, want peerhttp.Peer.MaxAnswer %d, a row at fault %v, of notes", le, limit, tc.row)
					}
					if tc.row && le.ID != first {
						t.Fatalf("sync: the error names row %q, want %q", le.ID, first)
					}
					if !strings.Contains(err.Error(), "peerhttp.Peer.MaxAnswer") {
						t.Fatalf("sync: %q does not name the bound", err)
					}
				}
				if n := count(t, a, "SELECT count(*) FROM notes"); n != 1 {
					t.Fatalf("the puller holds %d notes, want its own only", n)
				}
				// The other way still syncs.
				if n := count(t, served, "SELECT count(*) FROM notes WHERE id = '"+mine.ID.String()+"'"); n != 1 {
					t.Fatalf("the puller's own note did not reach the peer")
				}
			})
		}
	}
}
