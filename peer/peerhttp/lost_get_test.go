package peerhttp_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestLostAnswerOfGet: the answer of a signed GET (hello, cursor,
// changes) is lost after the peer did the work, its connection closed (a
// process dying, a proxy cutting it). Go's http.Transport resends such a
// request by itself on a kept-alive connection, with the nonce the peer
// spent on the first copy; the peer rightly answers the copy 401
// replayed, which the sync used to fail with (dbsync.ErrUnauthorized, as
// for a wrong secret). The request is now signed again with a fresh nonce
// and sent once more: the sync completes.
func TestLostAnswerOfGet(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			served := newPeerNode(t, kind)
			loser := synctest.NewAnswerLoser(peerhttp.NewHandler(served, &peerhttp.Config{Secret: meshSecret}))
			hs := httptest.NewServer(loser)
			t.Cleanup(hs.Close)
			other := newPeerNode(t, dbtest.KindSQLite)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			hp := &peerhttp.Peer{URL: hs.URL, Secret: meshSecret, Self: other, Client: &http.Client{Transport: tr}}
			if _, err := other.Sync(ctx, hp); err != nil { // a kept-alive connection, which the transport resends on
				t.Fatal(err)
			}
			for _, ep := range []string{"hello", "cursor", "changes"} {
				t.Run(ep, func(t *testing.T) {
					if _, err := served.DB().NewInsert().Model(&testmodels.List{Name: "from served, before " + ep}).Exec(ctx); err != nil {
						t.Fatal(err)
					}
					loser.Reset()
					loser.Arm(ep)
					rep, err := other.Sync(ctx, hp)
					if err != nil {
						t.Fatalf("sync: %v (unauthorized: %v)", err, errors.Is(err, dbsync.ErrUnauthorized))
					}
					if n := loser.Served(ep); n < 2 {
						t.Fatalf("%s reached the peer %d time(s): its lost answer was not resent", ep, n)
					}
					if rep.Pulled != 1 {
						t.Errorf("sync pulled %d change(s), want 1", rep.Pulled)
					}
					d1, _ := other.Digest(ctx)
					d2, _ := served.Digest(ctx)
					if d1 != d2 {
						t.Fatal("digests differ after the sync")
					}
				})
			}
		})
	}
}
