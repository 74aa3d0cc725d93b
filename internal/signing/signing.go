// Package signing is the one implementation of dbsync's request
// signatures, shared by the server (protocol.Signed, server.Authenticate)
// and the peers (peer.Signed, peer.Node.Authenticate): the HMAC-SHA256 of a
// request's canonical string and the timestamp window. It is pure (no
// database, no HTTP), so package protocol imports it; the store of used
// nonces that refuses replays is store.Nonces (internal/store).
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Request is what a signature covers.
type Request struct {
	Endpoint string
	Query    string
	// Sender is the signer's identity as text: a node id in decimal, a
	// peer's UUID.
	Sender    string
	Timestamp int64
	Nonce     string
	Body      []byte
	// BodyHash, when set, is the SHA-256 of the body and stands for Body.
	BodyHash *[sha256.Size]byte
	// Headers is the SHA-256 of the header values a form with Headers
	// covers (nil: of no bytes); other forms ignore it.
	Headers *[sha256.Size]byte
	// Target is the identity of the party the request is for, which a
	// form with Target covers (a peer's UUID): signed for one, a request
	// cannot be replayed to another holder of the key.
	Target string
}

// Form is a canonical form of a request:
//
//	Prefix + "\n" + Endpoint + "\n" + Query + "\n" + Sender + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body))
//
// followed by "\n" + hex(Request.Headers) when Headers, by "\n" +
// Request.Target when Target, and by one more "\n" when Terminated.
// Signatures are stored nowhere but travel between versions: a form never
// changes.
type Form struct {
	Prefix     string
	Headers    bool
	Target     bool
	Terminated bool
}

// The forms in use.
var (
	// Node is the form of protocol.Signed (nodes of a server) without
	// its Headers.
	Node = Form{Prefix: "dbsync-v1"}
	// NodeHeaders is the form of protocol.Signed with its Headers: the
	// schema headers signed too.
	NodeHeaders = Form{Prefix: "dbsync-v2", Headers: true}
	// Peer is the form of peer.Signed (peers of a mesh) without Target.
	Peer = Form{Prefix: "dbsync-peer-v1", Terminated: true}
	// PeerTarget is the form of peer.Signed with its Target: the serving
	// peer's identity signed too.
	PeerTarget = Form{Prefix: "dbsync-peer-v2", Target: true, Terminated: true}
)

// Canonical returns the canonical string of r.
func (f Form) Canonical(r *Request) []byte {
	var sum [sha256.Size]byte
	if r.BodyHash != nil {
		sum = *r.BodyHash
	} else {
		sum = sha256.Sum256(r.Body)
	}
	var b strings.Builder
	b.WriteString(f.Prefix)
	for _, part := range []string{r.Endpoint, r.Query, r.Sender, strconv.FormatInt(r.Timestamp, 10), r.Nonce, hex.EncodeToString(sum[:])} {
		b.WriteByte('\n')
		b.WriteString(part)
	}
	if f.Headers {
		sum = sha256.Sum256(nil)
		if r.Headers != nil {
			sum = *r.Headers
		}
		b.WriteByte('\n')
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	if f.Target {
		b.WriteByte('\n')
		b.WriteString(r.Target)
	}
	if f.Terminated {
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// MAC returns the HMAC-SHA256 of r's canonical string under key.
func (f Form) MAC(key []byte, r *Request) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(f.Canonical(r))
	return m.Sum(nil)
}

// Sign returns the signature of r under key, in lowercase hex.
func (f Form) Sign(key []byte, r *Request) string { return hex.EncodeToString(f.MAC(key, r)) }

// Verify reports whether signature (hex) is the signature of r under key,
// in constant time.
func (f Form) Verify(key []byte, r *Request, signature string) bool {
	want, err := hex.DecodeString(signature)
	if err != nil {
		return false
	}
	return hmac.Equal(f.MAC(key, r), want)
}

// InWindow reports whether a request timestamp (Unix milliseconds) is
// within skew of now.
func InWindow(now time.Time, timestamp int64, skew time.Duration) bool {
	d := now.Sub(time.UnixMilli(timestamp))
	return d <= skew && d >= -skew
}
