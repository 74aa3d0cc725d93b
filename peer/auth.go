package peer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
)

// Signed is what a peer signs in each HTTP request: HMAC-SHA256, keyed
// with the secret shared by the peers of a mesh, of
//
//	"dbsync-peer-v1\n" + Endpoint + "\n" + Query + "\n" + Peer + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body))
//
// as dbsync.Signed for nodes of a server, with the peer's UUID as identity.
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

func (s *Signed) mac(secret []byte) []byte {
	var sum [sha256.Size]byte
	if s.BodyHash != nil {
		sum = *s.BodyHash
	} else {
		sum = sha256.Sum256(s.Body)
	}
	var b strings.Builder
	b.WriteString("dbsync-peer-v1\n")
	for _, part := range []string{s.Endpoint, s.Query, s.Peer.String(), strconv.FormatInt(s.Timestamp, 10), s.Nonce, hex.EncodeToString(sum[:])} {
		b.WriteString(part)
		b.WriteByte('\n')
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(b.String()))
	return m.Sum(nil)
}

// Sign returns the signature of s.
func (s *Signed) Sign(secret []byte) string { return hex.EncodeToString(s.mac(secret)) }

// Authenticate checks a signed request from a peer: the signature with the
// mesh secret, a timestamp within skew of this node's clock, and a nonce
// the peer never used (remembered in sync_lww_nonces). Failures wrap
// dbsync.ErrUnauthorized or dbsync.ErrReplay.
func (n *Node) Authenticate(ctx context.Context, secret []byte, s *Signed, signature string, skew time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no mesh secret configured", dbsync.ErrUnauthorized)
	}
	want, err := hex.DecodeString(signature)
	if err != nil || !hmac.Equal(want, s.mac(secret)) {
		return fmt.Errorf("%w: signature does not match", dbsync.ErrUnauthorized)
	}
	now := n.cfg.Now()
	if d := now.Sub(time.UnixMilli(s.Timestamp)); d > skew || d < -skew {
		return fmt.Errorf("%w: timestamp outside the window", dbsync.ErrUnauthorized)
	}
	if !dbsync.ValidNonce(s.Nonce) {
		return fmt.Errorf("%w: malformed nonce", dbsync.ErrUnauthorized)
	}
	res, err := n.db.ExecContext(ctx, "INSERT INTO sync_lww_nonces (peer, nonce, seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		s.Peer.String(), s.Nonce, now.UTC())
	if err != nil {
		return fmt.Errorf("record nonce: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("%w: nonce already used", dbsync.ErrReplay)
	}
	_, _ = n.db.ExecContext(ctx, "DELETE FROM sync_lww_nonces WHERE seen < ?", now.Add(-2*skew).UTC())
	return nil
}
