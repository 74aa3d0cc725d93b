package peerhttp_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
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

// TestNoSecretNamed: a Peer without Secret fails each call at once with
// an error naming Peer.Secret, and a handler without Secret refuses every
// request with a message naming its Config.Secret. Before, the Peer sent
// requests signed with an empty key, refused "signature does not match",
// and the handler's refusal, "no mesh secret configured", did not say
// which side lacked it.
func TestNoSecretNamed(t *testing.T) {
	t.Parallel()
	e := newPeerEnv(t, dbtest.KindSQLite, nil)
	n := newPeerNode(t, dbtest.KindSQLite)
	if _, err := n.Sync(ctx, &peerhttp.Peer{URL: e.url, Self: n}); err == nil || !strings.Contains(err.Error(), "Peer.Secret") {
		t.Errorf("sync without Peer.Secret: %v, want an error naming Peer.Secret", err)
	}
	srv := httptest.NewServer(peerhttp.NewHandler(e.node, nil))
	t.Cleanup(srv.Close)
	_, err := n.Sync(ctx, &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: n})
	if !errors.Is(err, dbsync.ErrUnauthorized) || !strings.Contains(err.Error(), "Config.Secret") {
		t.Errorf("sync with a handler without Config.Secret: %v, want dbsync.ErrUnauthorized naming Config.Secret", err)
	}
}
