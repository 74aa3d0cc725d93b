package stream_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// TestRemoteRefusalIs: when the other end refuses this end's pages, this
// end's error is the refusal's, as over HTTP (errors.Is with
// peer.ErrClockSkew), besides stream.ErrRemote: a node whose clock runs
// ahead must be able to tell, whichever end found it.
func TestRemoteRefusalIs(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			a := newNode(t, p.a)
			// b's clock runs two minutes behind: a's writes are too far
			// ahead for it.
			b := synctest.NewNode(t, p.b, &peer.Config{Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
			insert(t, a, note("ahead"))
			before := stateOf(t, b)
			o := pipeSession(t, a, b, cfg(), cfg())
			if !errors.Is(o.b.err, peer.ErrClockSkew) {
				t.Fatalf("b: %v, want ErrClockSkew", o.b.err)
			}
			if !errors.Is(o.a.err, stream.ErrRemote) || !errors.Is(o.a.err, peer.ErrClockSkew) {
				t.Fatalf("a: %v, want ErrRemote and ErrClockSkew", o.a.err)
			}
			if !stateOf(t, b).equal(before) {
				t.Fatal("b applied refused pages")
			}
		})
	}
}

// TestContextCancelIs: a session ended by its context's end fails with
// the context's error (errors.Is), not only with a network error about
// the connection the end closed.
func TestContextCancelIs(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	c1, c2 := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, c2) }() // reads, never writes
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := stream.Sync(ctx, c1, a, cfg())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
}
