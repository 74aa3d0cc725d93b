package stream_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/stream"
)

// TestPeerStopsReading: the other end authenticates, sends its (empty)
// changes and then never reads again, keeping the connection open. The
// session must still end, with an error, within a few idle timeouts: a
// write blocked forever would hang a Serve goroutine for good.
//
// The other end is written by hand from the protocol: hello, the HMAC
// answer over both nonces, cursor, done.
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
		me, nonce := uuid.NewString(), protocol.NewNonce()
		frame := func(typ byte, v any) {
			raw, _ := json.Marshal(v)
			_ = stream.WriteFrame(c2, typ, raw)
		}
		go frame('H', map[string]any{"version": stream.Version, "node": me, "nonce": nonce, "schema": a.Schema()})
		r := bufio.NewReader(c2)
		_, raw, err := stream.ReadFrame(r, 1<<20)
		if err != nil {
			return
		}
		var theirs struct{ Node, Nonce string }
		_ = json.Unmarshal(raw, &theirs)
		if _, _, err := stream.ReadFrame(r, 1<<20); err != nil { // their answer
			return
		}
		m := hmac.New(sha256.New, secret)
		fmt.Fprintf(m, "dbsync-stream-auth\n%s\n%s\n%s\n%s\n", nonce, theirs.Nonce, me, theirs.Node)
		frame('A', map[string]string{"mac": hex.EncodeToString(m.Sum(nil))})
		frame('C', map[string]int64{"pulled_seq": 0})
		frame('D', struct{}{})
		// ... and never read again.
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := stream.Sync(ctx, c1, a, &stream.Config{Secret: secret, IdleTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("the session succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the session ended after %s (%v): only the context stopped it", d, err)
	}
	t.Logf("ended after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
