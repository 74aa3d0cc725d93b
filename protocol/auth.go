package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/go-dbsync/dbsync/internal/signing"
)

// HTTP headers of the protocol.
const (
	HeaderProtocol  = "X-Dbsync-Protocol"  // ProtocolVersion
	HeaderSchema    = "X-Dbsync-Schema"    // Registry.Fingerprint
	HeaderTables    = "X-Dbsync-Tables"    // NodeSchema, text form
	HeaderNullable  = "X-Dbsync-Nullable"  // Nullable, text form
	HeaderNode      = "X-Dbsync-Node"      // node id (signed requests)
	HeaderTimestamp = "X-Dbsync-Timestamp" // Unix milliseconds
	HeaderNonce     = "X-Dbsync-Nonce"     // 32 hex digits, never reused
	HeaderSignature = "X-Dbsync-Signature" // hex HMAC-SHA256, see Signed
)

// Signed is what a node signs in each request after registering. The
// signature is HMAC-SHA256, keyed with the node's secret as text (its 64
// hex characters as ASCII bytes, not the 32 bytes they encode), of the
// canonical string
//
//	"dbsync-v1\n" + Endpoint + "\n" + Query + "\n" + NodeID + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body))
//
// in lowercase hex. Endpoint is the procedure name ("push", "pull",
// "repair", "query"), Query the request's query string with its parameters
// sorted by key (url.Values.Encode), Body the exact request body (empty for
// GET). docs/protocol.md has a worked example. The whole body is covered, and the server refuses a timestamp
// outside its window or a nonce it has seen, so a captured request cannot
// be replayed or altered. The form is internal/signing.Node, the one
// implementation shared with the peers.
type Signed struct {
	Endpoint  string
	Query     string
	NodeID    int64
	Timestamp int64
	Nonce     string
	Body      []byte
	// BodyHash, when set, is the SHA-256 of the body and stands for Body:
	// a server that hashed a large body while reading it need not hold it.
	BodyHash *[sha256.Size]byte
}

// request is s as package signing signs it.
func (s *Signed) request() *signing.Request {
	return &signing.Request{Endpoint: s.Endpoint, Query: s.Query, Sender: strconv.FormatInt(s.NodeID, 10),
		Timestamp: s.Timestamp, Nonce: s.Nonce, Body: s.Body, BodyHash: s.BodyHash}
}

// Sign returns the signature of s with the node's secret.
func (s *Signed) Sign(secret string) string { return signing.Node.Sign([]byte(secret), s.request()) }

// Verify reports whether signature is the signature of s, in constant time.
func (s *Signed) Verify(secret, signature string) bool {
	return signing.Node.Verify([]byte(secret), s.request(), signature)
}

// NewSecret returns a new node secret: 32 bytes from crypto/rand, in hex.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewNonce returns a request nonce: 16 bytes from crypto/rand, in hex.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidNonce reports whether s has the form of a nonce: 16 to 64 lowercase
// hex digits.
func ValidNonce(s string) bool {
	if len(s) < 16 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
