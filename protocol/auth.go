package protocol

import (
	"crypto/hmac"
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
	// HeaderSignatureForm is "2" when the signature covers the schema
	// headers too (Signed.Headers); absent, it does not (form 1).
	HeaderSignatureForm = "X-Dbsync-Signature-Form"
)

// SignatureFormHeaders is the value of HeaderSignatureForm of a signature
// that covers the schema headers.
const SignatureFormHeaders = "2"

// Signed is what a node signs in each request after registering. The
// signature is HMAC-SHA256, keyed with the node's secret as text (its 64
// hex characters as ASCII bytes, not the 32 bytes they encode), of the
// canonical string
//
//	"dbsync-v1\n" + Endpoint + "\n" + Query + "\n" + NodeID + "\n" +
//	Timestamp + "\n" + Nonce + "\n" + hex(SHA-256(Body))
//
// in lowercase hex; with Headers (form 2, sent with the header
// X-Dbsync-Signature-Form: 2) the prefix is "dbsync-v2" and the string
// ends with one more line, "\n" + hex(SHA-256(Headers.Text())), so that
// the schema headers the server reads the request against cannot be
// changed in transit either. Endpoint is the procedure name ("push", "pull",
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
	// Headers, when not nil, are the schema headers the signature covers
	// (form 2); nil, it covers none (form 1).
	Headers *SignedHeaders
}

// SignedHeaders are the request headers a signature of form 2 covers:
// the values of X-Dbsync-Schema, X-Dbsync-Tables and X-Dbsync-Nullable
// ("" for one not sent).
type SignedHeaders struct {
	Schema, Tables, Nullable string
}

// Text is what a signature of form 2 hashes: the three values, each
// followed by "\n".
func (h *SignedHeaders) Text() []byte {
	return []byte(h.Schema + "\n" + h.Tables + "\n" + h.Nullable + "\n")
}

// form is the form of s's signature, and the request it signs.
func (s *Signed) form() (signing.Form, *signing.Request) {
	r := &signing.Request{Endpoint: s.Endpoint, Query: s.Query, Sender: strconv.FormatInt(s.NodeID, 10),
		Timestamp: s.Timestamp, Nonce: s.Nonce, Body: s.Body, BodyHash: s.BodyHash}
	if s.Headers == nil {
		return signing.Node, r
	}
	sum := sha256.Sum256(s.Headers.Text())
	r.Headers = &sum
	return signing.NodeHeaders, r
}

// Sign returns the signature of s with the node's secret.
func (s *Signed) Sign(secret string) string {
	f, r := s.form()
	return f.Sign([]byte(secret), r)
}

// Verify reports whether signature is the signature of s, in constant time.
func (s *Signed) Verify(secret, signature string) bool {
	f, r := s.form()
	return f.Verify([]byte(secret), r, signature)
}

// ClockSignature signs the server's time in its answer to a signed request
// refused for its timestamp (ErrorDetail.ServerTime, Unix milliseconds),
// for the node that sent it and bound to that request's nonce, so that
// the node can trust it and correct its own clock: HMAC-SHA256, keyed
// with the node's secret as text (as Signed), of
//
//	"dbsync-clock\n" + NodeID + "\n" + Nonce + "\n" + ServerTime + "\n" + Salt + "\n"
//
// in lowercase hex (decimal numbers; docs/protocol.md, "Clocks"). Salt
// (ErrorDetail.ServerTimeSalt) is the server's, random for each answer
// (NewNonce): two answers to one request never match, so they cannot be
// compared to tell a registered node from one the server answers with
// random digits.
func ClockSignature(secret string, node int64, nonce string, serverTime int64, salt string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("dbsync-clock\n" + strconv.FormatInt(node, 10) + "\n" + nonce + "\n" + strconv.FormatInt(serverTime, 10) + "\n" + salt + "\n"))
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyClock reports whether signature is the ClockSignature of
// serverTime and salt for node and nonce, in constant time.
func VerifyClock(secret string, node int64, nonce string, serverTime int64, salt, signature string) bool {
	return hmac.Equal([]byte(signature), []byte(ClockSignature(secret, node, nonce, serverTime, salt)))
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
