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
// implementation: internal/signing).
type Signed struct {
	Endpoint  string
	Query     string
	Peer      uuid.UUID
	Timestamp int64
	Nonce     string
	Body      []byte
	// BodyHash, when set, is the SHA-256 of the body and stands for Body:
	// a server can verify a body it hashed while reading it (spooled to
	// disk) without holding it in memory.
	BodyHash *[sha256.Size]byte
}

// request is s as package signing signs it.
func (s *Signed) request() *signing.Request {
	return &signing.Request{Endpoint: s.Endpoint, Query: s.Query, Sender: s.Peer.String(), Timestamp: s.Timestamp,
		Nonce: s.Nonce, Body: s.Body, BodyHash: s.BodyHash}
}

// Sign returns the signature of s.
func (s *Signed) Sign(secret []byte) string { return signing.Peer.Sign(secret, s.request()) }

// nonces are the nonces accepted from peers.
var nonces = store.Nonces{Table: "sync_lww_nonces", Sender: "peer"}

// Authenticate checks a signed request from a peer: the signature with the
// mesh secret, a timestamp within skew of this node's clock, and a nonce
// the peer never used (remembered in sync_lww_nonces). Failures wrap
// dbsync.ErrUnauthorized or dbsync.ErrReplay.
func (n *Node) Authenticate(ctx context.Context, secret []byte, s *Signed, signature string, skew time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no mesh secret configured", dbsync.ErrUnauthorized)
	}
	if !signing.Peer.Verify(secret, s.request(), signature) {
		return fmt.Errorf("%w: signature does not match", dbsync.ErrUnauthorized)
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
