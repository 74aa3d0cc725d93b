package peerhttp_test

import (
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestPeerWithoutSelf: a Peer without Self (the node making the requests)
// fails every call with an error that names the field. Before, each call
// panicked with a nil pointer dereference.
func TestPeerWithoutSelf(t *testing.T) {
	t.Parallel()
	e := newPeerEnv(t, dbtest.KindSQLite, nil)
	n := newPeerNode(t, dbtest.KindSQLite)
	hp := &peerhttp.Peer{URL: e.url, Secret: meshSecret}
	calls := map[string]func() error{
		"Sync": func() error { _, err := n.Sync(ctx, hp); return err },
		"ID":   func() error { _, err := hp.ID(ctx); return err },
		"Changes": func() error {
			_, err := hp.Changes(ctx, peer.Position{}, 0, n.ID(), false)
			return err
		},
		"Cursor": func() error { _, err := hp.Cursor(ctx, n.ID()); return err },
		"Apply": func() error {
			_, err := hp.Apply(ctx, n.ID(), func() (*peer.Batch, error) { return nil, nil })
			return err
		},
	}
	for name, call := range calls {
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("%s panicked: %v", name, v)
				}
			}()
			if err := call(); err == nil || !strings.Contains(err.Error(), "Self") {
				t.Errorf("%s: %v, want an error naming Peer.Self", name, err)
			}
		}()
	}
}
