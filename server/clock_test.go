package server_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestClockRefusal: a signed request whose timestamp is outside the
// window is refused with a *dbsync.ClockError (dbsync.ErrUnauthorized)
// carrying the server's time, signed for the node and the request's nonce
// (protocol.ClockSignature, with the answer's random salt), at the
// precheck; when the body took the request past the window, at the
// verification, without it: the node's clock was right. For a node the
// server does not know, the signature is random digits and the message
// reads the same: the answer does not tell registered nodes apart.
func TestClockRefusal(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
			f := newFixture(t, kind, &server.Config{Now: clk.Now})
			n := f.register()
			signed := func(node int64, secret string, at time.Time) (*protocol.Signed, string) {
				s := &protocol.Signed{Endpoint: "query", Query: "table=lists", NodeID: node, Timestamp: at.UnixMilli(), Nonce: protocol.NewNonce()}
				return s, s.Sign(secret)
			}
			clockErr := func(what string, err error) *dbsync.ClockError {
				t.Helper()
				var ce *dbsync.ClockError
				if !errors.As(err, &ce) || !errors.Is(err, dbsync.ErrUnauthorized) {
					t.Fatalf("%s: %v, want a *dbsync.ClockError wrapping dbsync.ErrUnauthorized", what, err)
				}
				if !ce.ServerTime.Equal(clk.Now()) {
					t.Fatalf("%s: server time %s, want %s", what, ce.ServerTime, clk.Now())
				}
				return ce
			}

			// Precheck: the node's clock an hour ahead.
			req, sig := signed(n.id, n.secret, clk.Now().Add(time.Hour))
			_, err := f.Srv.Authenticate(ctx, req, sig)
			known := clockErr("an hour ahead", err)
			if !protocol.VerifyClock(n.secret, n.id, req.Nonce, known.ServerTime.UnixMilli(), known.Salt, known.Signature) {
				t.Fatal("the server time's signature does not verify with the node's secret")
			}
			if protocol.VerifyClock(n.secret, n.id, protocol.NewNonce(), known.ServerTime.UnixMilli(), known.Salt, known.Signature) {
				t.Fatal("the server time's signature verifies for another request's nonce")
			}
			if !protocol.ValidNonce(known.Salt) {
				t.Fatalf("salt %q, want random hex digits", known.Salt)
			}

			// An unknown node: random digits, the same message.
			req, sig = signed(n.id+1000, n.secret, clk.Now().Add(time.Hour))
			_, err = f.Srv.Authenticate(ctx, req, sig)
			unknown := clockErr("unknown node", err)
			if len(unknown.Signature) != 64 || !protocol.ValidNonce(unknown.Salt) ||
				protocol.VerifyClock(n.secret, n.id+1000, req.Nonce, unknown.ServerTime.UnixMilli(), unknown.Salt, unknown.Signature) {
				t.Fatalf("unknown node's server time signed %q", unknown.Signature)
			}
			if strip := func(e error) string { return strings.TrimSpace(fmt.Sprint(e)) }; strip(known) != strip(unknown) {
				t.Fatalf("messages differ:\n%s\n%s", known, unknown)
			}

			// Verify: in the window at the precheck, past it once the body
			// arrived.
			req, sig = signed(n.id, n.secret, clk.Now())
			p, err := f.Srv.Precheck(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(6 * time.Minute)
			_, err = p.Verify(ctx, sig)
			var late *dbsync.ClockError
			if !errors.Is(err, dbsync.ErrUnauthorized) || errors.As(err, &late) {
				t.Fatalf("a slow body: %v, want dbsync.ErrUnauthorized without the server's time (the node's clock is right)", err)
			}

			// In the window: accepted.
			req, sig = signed(n.id, n.secret, clk.Now().Add(-time.Minute))
			if _, err := f.Srv.Authenticate(ctx, req, sig); err != nil {
				t.Fatalf("in the window: %v", err)
			}
		})
	}
}

// TestClockRefusalUnknownNodeProbe: refusals of the same node and nonce at
// the same server millisecond (concurrent requests: an out-of-window
// request's nonce is neither checked nor recorded, so it can be sent any
// number of times) must compare alike for a registered node and for a node
// id not registered, or comparing two answers tells registered node ids
// apart. With the answer's random salt, no two match.
func TestClockRefusalUnknownNodeProbe(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)) // frozen: one millisecond
			f := newFixture(t, kind, &server.Config{Now: clk.Now})
			n := f.register()
			nonce := protocol.NewNonce()
			probe := func(node int64) bool { // the two answers' signatures are equal
				var sigs []string
				for range 2 {
					s := &protocol.Signed{Endpoint: "query", Query: "table=lists", NodeID: node, Timestamp: clk.Now().Add(time.Hour).UnixMilli(), Nonce: nonce}
					_, err := f.Srv.Authenticate(ctx, s, strings.Repeat("0", 64))
					var ce *dbsync.ClockError
					if !errors.As(err, &ce) {
						t.Fatalf("node %d: %v, want a *dbsync.ClockError", node, err)
					}
					sigs = append(sigs, ce.Signature)
				}
				return sigs[0] == sigs[1]
			}
			if known, unknown := probe(n.id), probe(n.id+1000); known != unknown {
				t.Fatalf("same answers twice: registered node %v, node not registered %v: node ids can be probed", known, unknown)
			}
		})
	}
}
