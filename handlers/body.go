package handlers

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// prepare checks the protocol version, the query string (it must parse),
// the schema and, unless open, the signature headers (server.Precheck:
// node, timestamp, nonce) before it reads the body within limit
// (httpx.Bodies.Read), then verifies the signature over it. It returns
// the body, the node id, and the server as it serves the node's schema
// (server.ForSchema), and done, to call once the body is no longer used:
// a spooled body read into memory holds its size of Config.BodyMemory
// until then.
//
// Before the signature holds, the schema headers are only looked up
// among the schemas served already (server.LookupSchema: a hash, no
// parsing); the view of a new schema is built once the request is
// authenticated. A register request (open) is not checked for its
// schema here: server.Register checks it once its hook accepts the
// caller, and srv is then the server itself.
func (h *handler) prepare(w http.ResponseWriter, r *http.Request, endpoint string, limit int64, open bool) ([]byte, int64, *server.Server, func(), error) {
	body, node, srv, release, err := h.prepareBody(w, r, endpoint, limit, open)
	if release == nil || err != nil {
		if release != nil {
			release()
		}
		release = func() {}
	}
	return body, node, srv, release, err
}

// prepareBody is prepare; release, when not nil, gives back what the body
// holds of Config.BodyMemory.
func (h *handler) prepareBody(w http.ResponseWriter, r *http.Request, endpoint string, limit int64, open bool) ([]byte, int64, *server.Server, func(), error) {
	if v := r.Header.Get(protocol.HeaderProtocol); v != strconv.Itoa(protocol.ProtocolVersion) {
		return nil, 0, nil, nil, fmt.Errorf("%w: got %q, this server speaks %d", dbsync.ErrProtocolVersion, v, protocol.ProtocolVersion)
	}
	// url.URL.Query drops the pairs it cannot parse: they would pass
	// unsigned, and unseen by the handler's checks of its parameters.
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		return nil, 0, nil, nil, fmt.Errorf("%w: malformed query string: %w", dbsync.ErrBadRequest, err)
	}
	srv := h.srv
	fingerprint, announced := r.Header.Get(protocol.HeaderSchema), r.Header.Get(protocol.HeaderTables)
	var err error
	if !open {
		if srv, err = h.srv.LookupSchema(fingerprint, announced); err != nil {
			return nil, 0, nil, nil, err
		}
	}
	// A GET has no body: one announced is refused before anything waits
	// for it, so that a request no one signed cannot hold what it took
	// (a watch slot) while its body is awaited.
	if err := httpx.NoGetBody(r); err != nil {
		return nil, 0, nil, nil, err
	}
	var signed *protocol.Signed
	var sig string
	var pre *server.Prechecked
	if !open {
		if signed, sig, err = signedFrom(r, endpoint, h.cfg.RequireSignedSchema); err != nil {
			return nil, 0, nil, nil, err
		}
		if pre, err = h.srv.Precheck(r.Context(), signed); err != nil {
			return nil, 0, nil, nil, err
		}
	}
	var until time.Time
	if pre != nil {
		until = pre.Closes()
	}
	b, err := h.bodies.Read(w, r, limit, until)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	defer b.Close()
	// The memory a spooled body will take once authenticated is reserved
	// first: a request that finds the budget in use is refused before it
	// records its nonce (a write, which waits on SQLite while a push is
	// applied).
	if err := b.Reserve(); err != nil {
		return nil, 0, nil, nil, err
	}
	var node int64
	if !open {
		signed.BodyHash = &b.Sum
		if node, err = pre.Verify(r.Context(), sig); err != nil {
			return nil, 0, nil, b.Release, err
		}
		if srv == nil {
			if srv, err = h.srv.ForSchema(fingerprint, announced); err != nil {
				return nil, 0, nil, b.Release, err
			}
		}
		if err := srv.CheckNullable(r.Header.Get(protocol.HeaderNullable)); err != nil {
			return nil, 0, nil, b.Release, err
		}
	}
	data, err := b.Bytes()
	return data, node, srv, b.Release, err
}

// signedFrom reads the signature headers of a request, and its schema
// headers when the signature covers them (form 2; a signature of form 1
// is refused when requireHeaders); the body is not read (Signed.Body and
// BodyHash are left empty).
func signedFrom(r *http.Request, endpoint string, requireHeaders bool) (*protocol.Signed, string, error) {
	nodeText, tsText := r.Header.Get(protocol.HeaderNode), r.Header.Get(protocol.HeaderTimestamp)
	nonce, sig := r.Header.Get(protocol.HeaderNonce), r.Header.Get(protocol.HeaderSignature)
	if nodeText == "" || tsText == "" || nonce == "" || sig == "" {
		return nil, "", fmt.Errorf("%w: request is not signed (missing %s, %s, %s or %s)", dbsync.ErrUnauthorized,
			protocol.HeaderNode, protocol.HeaderTimestamp, protocol.HeaderNonce, protocol.HeaderSignature)
	}
	node, err1 := strconv.ParseInt(nodeText, 10, 64)
	ts, err2 := strconv.ParseInt(tsText, 10, 64)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("%w: malformed %s or %s", dbsync.ErrUnauthorized, protocol.HeaderNode, protocol.HeaderTimestamp)
	}
	if len(sig) != 2*sha256.Size {
		return nil, "", fmt.Errorf("%w: malformed %s", dbsync.ErrUnauthorized, protocol.HeaderSignature)
	}
	signed := &protocol.Signed{
		Endpoint:  endpoint,
		Query:     r.URL.Query().Encode(),
		NodeID:    node,
		Timestamp: ts,
		Nonce:     nonce,
	}
	switch form := r.Header.Get(protocol.HeaderSignatureForm); form {
	case protocol.SignatureFormHeaders:
		signed.Headers = &protocol.SignedHeaders{Schema: r.Header.Get(protocol.HeaderSchema),
			Tables: r.Header.Get(protocol.HeaderTables), Nullable: r.Header.Get(protocol.HeaderNullable)}
	case "":
		if requireHeaders {
			return nil, "", fmt.Errorf("%w: this server requires signatures of form %s (%s: the schema headers signed); upgrade the node",
				dbsync.ErrUnauthorized, protocol.SignatureFormHeaders, protocol.HeaderSignatureForm)
		}
	default:
		return nil, "", fmt.Errorf("%w: unknown %s %q", dbsync.ErrUnauthorized, protocol.HeaderSignatureForm, form)
	}
	return signed, sig, nil
}
