package stream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// TestPeerStopsReading: the other end authenticates, sends its (empty)
// changes and then never reads again, keeping the connection open. The
// session must still end, with an error, within a few idle timeouts: a
// write blocked forever would hang a Serve goroutine for good.
//
// The other end is written by hand from the protocol (handEnd): hello,
// the HMAC answer over both nonces, then sealed cursor and done frames.
func TestPeerStopsReading(t *testing.T) {
	t.Parallel()
	// Many pages: more than the session's queue of frames holds.
	a := synctest.NewNode(t, dbtest.KindSQLite, &peer.Config{BatchSize: 2})
	notes := make([]*testmodels.Note, 100)
	for i := range notes {
		notes[i] = note(fmt.Sprint(i))
	}
	insert(t, a, &notes)
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		h := &handEnd{conn: c2}
		h.handshake(t, a.Schema(), false)
		_ = h.frame('D', struct{}{})
		// ... and never read again.
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	_, err := stream.Sync(ctx, c1, a, &stream.Config{Secret: secret, IdleTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("the session succeeded")
	}
	// (Before, it waited for the other end's COMMIT up to ApplyTimeout,
	// 10 minutes, after its writes had failed.)
	if d := time.Since(start); d > 30*time.Second { // room for a busy machine
		t.Fatalf("the session took %s to end (%v)", d, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stream.ErrAuth) {
		t.Fatalf("the session ended with %v: not by its idle timeout on a peer that stopped reading", err)
	}
	t.Logf("ended: %v", err)
}
