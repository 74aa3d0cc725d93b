package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestServeProvesSecond: Serve's end sends its AUTH frame only once the
// party that connected proved it holds the secret. Before, it sent it
// right after the hellos, to anyone who connected: a MAC under the
// secret over a nonce of the party's choosing, enough to guess a weak
// secret offline. The party sees the hello and, at most, a failure.
func TestServeProvesSecond(t *testing.T) {
	t.Parallel()
	node := synctest.NewNode(t, dbtest.KindSQLite, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ln, node, &Config{Secret: hostileSecret, HandshakeTimeout: 500 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	for _, tc := range []struct {
		name string
		mac  string // "": no AUTH frame sent
	}{
		{"wrong proof", "00"},
		{"no proof", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // (a hang fails, at worst late)
			frame := func(typ byte, v any) {
				b, _ := json.Marshal(v)
				if err := WriteFrame(c, typ, b); err != nil {
					t.Fatal(err)
				}
			}
			frame(frameHello, hello{Version: Version, Node: uuid.NewString(), Nonce: protocol.NewNonce(), Schema: node.Schema()})
			if tc.mac != "" {
				frame(frameAuth, auth{MAC: tc.mac})
			}
			// Every frame until the node hangs up (after its failure, or
			// at the end of its handshake timeout).
			r := bufio.NewReader(c)
			var got []byte
			for {
				typ, _, err := ReadFrame(r, maxPreAuthFrame)
				if err != nil {
					break
				}
				got = append(got, typ)
			}
			if len(got) == 0 || got[0] != frameHello {
				t.Fatalf("frames %q, want the node's hello first", got)
			}
			for _, typ := range got[1:] {
				if typ != frameError {
					t.Fatalf("frames %q: the node sent %q to a party that did not prove it holds the secret", got, typ)
				}
			}
		})
	}
}
