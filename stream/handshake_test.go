package stream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/stream"
)

// Parties without the secret that connect and send nothing must not lock
// out the mesh: a peer holding the secret still gets its session while
// MaxSessions of them hold connections. (Before, they held every place for
// IdleTimeout per frame, and reconnected as soon as they were dropped.)
func TestUnauthenticatedConnectionsDoNotLockOutPeers(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	insert(t, a, note("from a"))
	addr := serve(t, b, &stream.Config{Secret: secret, MaxSessions: 4})
	// The outsider: MaxSessions idle connections, each read up to the
	// node's hello so that its session is running.
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, _, err := stream.ReadFrame(c, 1<<20); err != nil {
			t.Fatalf("outsider's connection: %v", err)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if _, err := stream.Sync(sctx, conn, a, cfg()); err != nil {
		t.Fatalf("a peer of the mesh, while outsiders hold idle connections: %v", err)
	}
}

// A party that does not finish the handshake within HandshakeTimeout is
// cut, however it trickles.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	b := newNode(t, dbtest.KindSQLite)
	addr := serve(t, b, &stream.Config{Secret: secret, HandshakeTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := stream.ReadFrame(c, 1<<20); err != nil { // the node's hello
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, _, err := stream.ReadFrame(c, 1<<20); err == nil {
		t.Fatal("read a frame after sending nothing")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the connection was cut after %v, want about the handshake timeout", d)
	}
}

// A session receives at most MaxReceive bytes of pages: beyond, it fails
// and applies nothing.
func TestMaxReceive(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	for i := range 20 {
		insert(t, a, note(fmt.Sprintf("note %d, long enough to count: %s", i, strings.Repeat("x", 100))))
	}
	cb := cfg()
	cb.MaxReceive = 1 << 10
	o := pipeSession(t, a, b, cfg(), cb)
	if !errors.Is(o.b.err, stream.ErrFrame) {
		t.Fatalf("b: %v, want ErrFrame", o.b.err)
	}
	if s := stateOf(t, b); s.Counts["notes"] != 0 {
		t.Fatalf("b applied %d notes", s.Counts["notes"])
	}
	// Within the bound, the same session goes through.
	cb.MaxReceive = 1 << 20
	pipeSession(t, a, b, cfg(), cb).ok(t)
	converged(t, a, b)
}
