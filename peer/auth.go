package peer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/signing"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// Signed is what a peer signs in each HTTP request: HMAC-SHA256, keyed
// with the secret shared by the peers of a mesh, of
//
//	"dbsync-peer-v1\n" + Endpoint + "\n" + Query + "\n" + Peer + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body)) + "\n"
//
// the canonical form of protocol.Signed for nodes of a server with another
// first line, the peer's UUID as identity, and a final newline (one
// implementation: internal/signing); with a Target, of
//
//	"dbsync-peer-v2\n" + Endpoint + "\n" + Query + "\n" + Peer + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body)) + "\n" +
//	Target + "\n"
//
// which another node of the mesh, whose identity is not Target, refuses:
// a request captured on its way to one node cannot be replayed to
// another.
type Signed struct {
	Endpoint  string
	Query     string
	Peer      uuid.UUID
	Timestamp int64
	Nonce     string
	// Target is the identity of the node the request is for (uuid.Nil:
	// none, the form without it).
	Target uuid.UUID
	Body   []byte
	// BodyHash, when set, is the SHA-256 of the body and stands for Body:
	// a server can verify a body it hashed while reading it (spooled to
	// disk) without holding it in memory.
	BodyHash *[sha256.Size]byte
}

// request is s as package signing signs it, and its form.
func (s *Signed) request() (signing.Form, *signing.Request) {
	r := &signing.Request{Endpoint: s.Endpoint, Query: s.Query, Sender: s.Peer.String(), Timestamp: s.Timestamp,
		Nonce: s.Nonce, Body: s.Body, BodyHash: s.BodyHash}
	if s.Target == uuid.Nil {
		return signing.Peer, r
	}
	r.Target = s.Target.String()
	return signing.PeerTarget, r
}

// Sign returns the signature of s.
func (s *Signed) Sign(secret []byte) string {
	f, r := s.request()
	return f.Sign(secret, r)
}

// nonces are the nonces accepted from peers.
var nonces = store.Nonces{Table: "sync_lww_nonces", Sender: "peer"}

// Authenticate checks a signed request from a peer: the signature with the
// mesh secret, a Target (when set) that is this node, a timestamp within
// skew of this node's clock, and a nonce the peer never used (remembered
// in sync_lww_nonces). Failures wrap dbsync.ErrUnauthorized or
// dbsync.ErrReplay.
func (n *Node) Authenticate(ctx context.Context, secret []byte, s *Signed, signature string, skew time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no mesh secret configured", dbsync.ErrUnauthorized)
	}
	if f, r := s.request(); !f.Verify(secret, r, signature) {
		return fmt.Errorf("%w: signature does not match", dbsync.ErrUnauthorized)
	}
	if s.Target != uuid.Nil && s.Target != n.id {
		return fmt.Errorf("%w: the request is signed for node %s, not this one", dbsync.ErrUnauthorized, s.Target)
	}
	now := n.cfg.Now()
	if !signing.InWindow(now, s.Timestamp, skew) {
		return fmt.Errorf("%w: timestamp outside the window", dbsync.ErrUnauthorized)
	}
	if !protocol.ValidNonce(s.Nonce) {
		return fmt.Errorf("%w: malformed nonce", dbsync.ErrUnauthorized)
	}
	recorded, err := nonces.Record(ctx, n.db, s.Peer.String(), s.Nonce, now)
	if err != nil {
		return err
	}
	if !recorded {
		return fmt.Errorf("%w: nonce already used", dbsync.ErrReplay)
	}
	_ = nonces.Sweep(ctx, n.db, now.Add(-2*skew))
	return nil
}
