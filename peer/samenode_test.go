package peer_test

import (
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestSameNodeIs: a node syncing with itself, or with a database of its
// identity, fails with peer.ErrSameNode (errors.Is), and applies nothing
// of its own versions as a peer's (Apply refuses them too).
func TestSameNodeIs(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := newNode(t, kind, nil)
			twin := newNode(t, dbtest.KindSQLite, &peer.Config{ID: a.ID()})
			insert(t, twin, newNote("twin's"))
			before := digest(t, a)
			for name, remote := range map[string]peer.Peer{"itself": a.AsPeer(), "twin": twin.AsPeer()} {
				if _, err := a.Sync(ctx, remote); !errors.Is(err, peer.ErrSameNode) {
					t.Errorf("sync with %s: %v, want ErrSameNode", name, err)
				}
			}
			if _, err := twin.Push(ctx, a.ID(), a.AsPeer()); !errors.Is(err, peer.ErrSameNode) {
				t.Errorf("push to a node of the same identity: %v, want ErrSameNode", err)
			}
			if digest(t, a) != before {
				t.Error("a applied its twin's rows")
			}
		})
	}
}
