package stream_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/stream"
)

// handEnd is the other end of a session written by hand from the protocol
// (it holds the secret): hello, the HMAC answer over both nonces, then
// frames sealed with the session's key.
type handEnd struct {
	conn    net.Conn
	r       *bufio.Reader
	sendKey []byte
	seq     uint64
}

func handMAC(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join(parts, "\n") + "\n"))
	return m.Sum(nil)
}

func (h *handEnd) frame(typ byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if h.sendKey != nil {
		m := hmac.New(sha256.New, h.sendKey)
		var head [9]byte
		binary.BigEndian.PutUint64(head[:8], h.seq)
		head[8] = typ
		m.Write(head[:])
		m.Write(raw)
		raw = append(raw, m.Sum(nil)...)
		h.seq++
	}
	return stream.WriteFrame(h.conn, typ, raw)
}

// handshake authenticates and sends the cursor; with drain, the node's
// frames are read and dropped from then on.
func (h *handEnd) handshake(t *testing.T, schema string, drain bool) {
	me, nonce := uuid.NewString(), protocol.NewNonce()
	go func() {
		_ = h.frame('H', map[string]any{"version": stream.Version, "node": me, "nonce": nonce, "schema": schema})
	}()
	h.r = bufio.NewReader(h.conn)
	_, raw, err := stream.ReadFrame(h.r, 1<<20)
	if err != nil {
		t.Errorf("hello: %v", err)
		return
	}
	var theirs struct{ Node, Nonce string }
	if err := json.Unmarshal(raw, &theirs); err != nil {
		t.Errorf("hello: %v", err)
		return
	}
	if _, _, err := stream.ReadFrame(h.r, 1<<20); err != nil {
		t.Errorf("auth: %v", err)
		return
	}
	_ = h.frame('A', map[string]string{"mac": hex.EncodeToString(handMAC(secret, "dbsync-stream-auth", nonce, theirs.Nonce, me, theirs.Node))})
	h.sendKey = handMAC(secret, "dbsync-stream-frames", nonce, theirs.Nonce, me, theirs.Node)
	_ = h.frame('C', map[string]int64{"pulled_seq": 0})
	if !drain {
		return
	}
	go func() {
		for {
			if _, _, err := stream.ReadFrame(h.r, 64<<20); err != nil {
				return
			}
		}
	}()
}

// TestSlowPeerHoldsNoLock: while the other end of a session is still
// sending its pages (here: it sends one, then waits), the application
// writes to the node's SQLite database as usual. Before, the session
// applied pages as they arrived, in a transaction holding the write lock,
// and the write waited for the peer (and failed at the busy timeout).
func TestSlowPeerHoldsNoLock(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c2.Close() })
	sent, wrote := make(chan struct{}), make(chan struct{})
	go func() {
		h := &handEnd{conn: c2}
		h.handshake(t, a.Schema(), true)
		_ = h.frame('B', peer.Batch{Changes: []peer.Change{}})
		close(sent)
		<-wrote // the application's write is done: now DONE
		_ = h.frame('D', struct{}{})
		_ = h.frame('K', map[string]int{"applied": 0})
	}()
	done := make(chan error, 1)
	go func() {
		_, err := stream.Sync(context.Background(), c1, a, &stream.Config{Secret: secret, IdleTimeout: time.Minute})
		done <- err
	}()
	<-sent
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.DB().NewInsert().Model(&testmodels.Note{ID: uuid.New(), Body: "local", Created: time.Now().UTC()}).Exec(ctx)
	close(wrote)
	if err != nil {
		t.Fatalf("a local write while a peer is sending: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("session: %v", err)
	}
}

// TestApplyLongerThanIdle: the end that receives a large backlog applies
// it after the last page, before it answers COMMIT; the sending end waits
// for that answer up to ApplyTimeout, not IdleTimeout. Before, a backlog
// whose apply took longer than IdleTimeout failed both ends, each having
// applied what it received.
func TestApplyLongerThanIdle(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbA := dbtest.SQLite(t)
			if err := testmodels.CreateSchema(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
			fill(t, dbA, 4000, func(i int) any {
				return &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("note %d", i), Created: created}
			})
			// b's apply of a's backlog ends 3 s after its transaction
			// (its event's callback waits), past the 1 s IdleTimeout
			// whatever the machine's speed; every frame comes well
			// within it.
			const idle = time.Second
			a := synctest.NewNodeWith(t, dbA, testmodels.All(), &peer.Config{BatchSize: 100})
			b := synctest.NewNode(t, kind, &peer.Config{BatchSize: 100, OnEvent: func(_ context.Context, e dbsync.Event) {
				if e.Op == "apply" && e.Operations > 0 {
					time.Sleep(3 * idle)
				}
			}})
			c := &stream.Config{Secret: secret, IdleTimeout: idle}
			o := pipeSession(t, a, b, c, c)
			if o.a.err != nil || o.b.err != nil {
				t.Fatalf("session: a: %v; b: %v", o.a.err, o.b.err)
			}
			converged(t, a, b)
		})
	}
}
