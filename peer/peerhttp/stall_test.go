package peerhttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestStalledAnswer: a party answering at a peer's URL (it needs no
// secret) that stalls without closing, before its answer's headers or in
// its body, fails the sync with dbsync.ErrNetwork naming
// Peer.StallTimeout. Before, the sync waited as long as its context: for
// ever under one without a deadline.
func TestStalledAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request)
	}{
		{"no headers", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{"a body that stops", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"node":"`))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			self := newPeerNode(t, dbtest.KindSQLite)
			fake := httptest.NewServer(http.HandlerFunc(tc.serve))
			t.Cleanup(func() {
				fake.CloseClientConnections()
				fake.Close()
			})
			// (A bound far above the stall's, for the test to end
			// without the fix.)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p := &peerhttp.Peer{URL: fake.URL, Secret: meshSecret, Self: self, StallTimeout: 200 * time.Millisecond}
			_, err := self.Sync(ctx, p)
			if !errors.Is(err, dbsync.ErrNetwork) || !strings.Contains(err.Error(), "peerhttp.Peer.StallTimeout") || ctx.Err() != nil {
				t.Fatalf("sync: %v (context: %v), want dbsync.ErrNetwork naming Peer.StallTimeout", err, ctx.Err())
			}
		})
	}
}
