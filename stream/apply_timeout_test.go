package stream_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/stream"
)

// noDeadlines hides a connection's deadlines: a stream of another kind
// (a serial line, a pipe of processes).
type noDeadlines struct{ io.ReadWriteCloser }

// TestApplyTimeoutWithoutDeadlines: the other end takes this end's pages
// and never answers COMMIT, over a connection without deadlines. The
// session fails after ApplyTimeout, as documented, with a network error
// naming it. Before, ApplyTimeout was only a read deadline: on such a
// connection the session waited until its context ended (for ever
// without one).
func TestApplyTimeoutWithoutDeadlines(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := newNode(t, kind)
			insert(t, a, note("x"))
			c1, c2 := net.Pipe()
			defer c2.Close()
			go func() {
				h := &handEnd{conn: c2}
				h.handshake(t, a.Schema(), true)
				_ = h.frame('D', struct{}{})
				// ... and never answers COMMIT.
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := stream.Sync(ctx, noDeadlines{c1}, a, &stream.Config{Secret: secret, ApplyTimeout: 500 * time.Millisecond})
			if err == nil {
				t.Fatal("the session succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, dbsync.ErrNetwork) || !strings.Contains(err.Error(), "ApplyTimeout") {
				t.Fatalf("the session ended after %s with %v, want a network error at ApplyTimeout", time.Since(start), err)
			}
			if d := time.Since(start); d > 20*time.Second { // room for a busy machine
				t.Fatalf("the session took %s to end (%v)", d, err)
			}
			t.Logf("ended: %v", err)
		})
	}
}
