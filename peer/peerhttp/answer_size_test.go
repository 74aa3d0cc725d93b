package peerhttp_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

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
