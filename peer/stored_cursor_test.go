package peer_test

import (
	"net/http/httptest"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestStoredMalformedCursorEpoch: a node's stored cursor for a peer whose
// epoch is not one a node hands out (recorded unchecked by an earlier
// release, or a damaged database) was sent as it was: over HTTP every
// later pull from that peer was refused (400), for ever; in process the
// peer took it for a restore of its own. The node now reads that peer's
// feed from the start again, once, and syncs.
func TestStoredMalformedCursorEpoch(t *testing.T) {
	secret := []byte("stored cursor test secret")
	transports := map[string]func(t *testing.T, self, other *peer.Node) peer.Peer{
		"in process": func(_ *testing.T, _, other *peer.Node) peer.Peer { return other.AsPeer() },
		"http": func(t *testing.T, self, other *peer.Node) peer.Peer {
			srv := httptest.NewServer(peerhttp.NewHandler(other, &peerhttp.Config{Secret: secret}))
			t.Cleanup(srv.Close)
			return &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: self}
		},
	}
	for _, k := range kinds {
		for via, remote := range transports {
			t.Run(k.name+"/"+via, func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, k.other, nil)
				aToB := remote(t, a, b)
				insert(t, b, newNote("first"))
				mustSync(t, a, aToB)
				for _, bad := range []string{"not-an-epoch", "A0B1C2D3-0000-4000-8000-000000000000"} {
					exec(t, a, "UPDATE sync_lww_cursor_epochs SET epoch = ? WHERE peer = ?", bad, b.ID().String())
					insert(t, b, newNote("after "+bad))
					if _, err := a.Sync(ctx, aToB); err != nil {
						t.Fatalf("sync with a stored cursor of epoch %q: %v", bad, err)
					}
					sameLive(t, a, b)
					sameDigests(t, a, b)
					// Settled: the next sync moves nothing, and b took
					// nothing for a restore of its own.
					if rep := mustSync(t, a, aToB); rep.Pulled != 0 || rep.Pushed != 0 || rep.Resynced {
						t.Fatalf("sync after the repair: %+v", rep)
					}
					var restores int
					if err := b.DB().QueryRowContext(ctx, "SELECT restores FROM sync_lww_feed WHERE id = 1").Scan(&restores); err != nil {
						t.Fatal(err)
					}
					if restores != 0 {
						t.Fatalf("b recorded %d restores of its own from a's stored cursor", restores)
					}
				}
			})
		}
	}
}
