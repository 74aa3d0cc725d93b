package stream_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// TestSameNodeIs: two databases of the same node identity (a copied
// database, or Config.ID given twice) refuse to sync, each end with
// peer.ErrSameNode, which callers can tell with errors.Is; nothing is
// exchanged.
func TestSameNodeIs(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			id := uuid.New()
			a := synctest.NewNode(t, p.a, &peer.Config{ID: id})
			b := synctest.NewNode(t, p.b, &peer.Config{ID: id})
			insert(t, a, note("a's"))
			before := stateOf(t, b)
			o := pipeSession(t, a, b, cfg(), cfg())
			for side, err := range map[string]error{"a": o.a.err, "b": o.b.err} {
				if !errors.Is(err, peer.ErrSameNode) {
					t.Errorf("%s: %v, want peer.ErrSameNode", side, err)
				}
			}
			if !stateOf(t, b).equal(before) {
				t.Fatal("b applied a's rows")
			}
		})
	}
}

// TestNoSecretIs: a session, Serve and Listen without a secret fail with
// stream.ErrNoSecret (Serve and Listen at once, rather than fail each
// connection), and Sync closes the connection it was given.
func TestNoSecretIs(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	// (Bounded, so that a Serve that accepts without a secret ends too.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []*stream.Config{nil, {}, {Secret: []byte{}}} {
		c1, c2 := net.Pipe()
		if _, err := stream.Sync(context.Background(), c1, a, c); !errors.Is(err, stream.ErrNoSecret) {
			t.Errorf("Sync with %+v: %v, want ErrNoSecret", c, err)
		}
		if _, err := c2.Read(make([]byte, 1)); err == nil {
			t.Error("Sync left the connection open")
		}
		c2.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Serve(ctx, ln, a, c); !errors.Is(err, stream.ErrNoSecret) {
			t.Errorf("Serve with %+v: %v, want ErrNoSecret", c, err)
		}
		ln.Close()
		if err := stream.Listen(ctx, "tcp", "127.0.0.1:0", nil, a, c); !errors.Is(err, stream.ErrNoSecret) {
			t.Errorf("Listen with %+v: %v, want ErrNoSecret", c, err)
		}
	}
}
