package peerhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/internal/signing"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

// Config tunes the handler of a peer node.
type Config struct {
	// Secret is the mesh secret shared by the peers (required: without
	// it every request is refused, 401 unauthorized).
	Secret []byte
	// MaxBodyBytes bounds the body of one request: a larger one is
	// refused (413 too_large). The node announces it in its hello, and a
	// peer sends a larger apply body in parts within it, which the node
	// stages (in a file in SpoolDir past 1 MiB) and applies with the last
	// part, in one transaction: it bounds a request, not a backlog. A body
	// over 1 MiB is spooled to disk and applied from there a page at a
	// time, so this bounds disk, not memory. Default 1 GiB.
	MaxBodyBytes int64
	// MaxPageBytes bounds one page (a JSON line) of an apply body, which
	// is decoded in memory: a larger one is refused (413 too_large, a
	// *peer.LimitError naming it and the page's first row), nothing
	// applied, so that a peer cannot make the node hold a body's bytes in
	// memory. A peer's pages end at its peer.Config.MaxBatchBytes (32
	// MiB), which must stay below it, and hold at least one row: a row
	// larger than this never reaches the node. Default 64 MiB, as a
	// stream's MaxFrame.
	MaxPageBytes int64
	// PreauthMemory, PreauthDisk and SpoolDir bound the bodies not yet
	// authenticated, as the fields of the same names in handlers.Config do
	// for the server's handler: a request whose Content-Length does not
	// fit in what is left of them is answered 503 busy before its body is
	// read, one that fits takes them as its bytes arrive, and bodies over
	// 1 MiB are hashed while they are spooled to disk; a body still
	// arriving when its timestamp's window (ClockSkew) closes is refused
	// 401 without being read further. Defaults 64 MiB, 1 GiB (MaxBodyBytes when that
	// is larger), os.TempDir(). Once its request is authenticated, an
	// apply body leaves these budgets; its file stays until the apply is
	// answered (a part's, until the last part's apply is answered).
	PreauthMemory int64
	PreauthDisk   int64
	SpoolDir      string
	// RequireTargetSigned refuses (401) a request other than hello whose
	// signature does not cover this node's identity (form 2,
	// SignatureFormTarget), as peers of earlier releases sign: such a
	// request, captured on its way to another node of the mesh, could be
	// replayed here within the window. Set it once every peer of the mesh
	// runs this release.
	RequireTargetSigned bool
	// ClockSkew bounds request timestamps. Default 5 minutes.
	ClockSkew time.Duration
	// StagedTTL is how long the node keeps the parts of a peer's apply
	// body after the latest one, for the peer to resume the body: parts
	// kept longer are dropped when a part of any peer arrives (a peer
	// that never came back). Default 24 hours, as the server's
	// StagedChunkTTL.
	StagedTTL time.Duration
	// MaxStagedBytes bounds the bytes of the apply bodies the node stages
	// from parts, summed over the peers (a body being applied counts until
	// it is answered): a part that would take one body past it is refused
	// 413 too_large and the body dropped (such a body never fits: the
	// peer's backlog must be sent in smaller applies), one that would take
	// the bodies of all peers past it is refused 503 busy, the body kept
	// for the peer to resume later. Default 4 GiB.
	MaxStagedBytes int64
	// Logger receives a line per failed request: the text of an internal
	// error, which the peer is answered without ("internal error
	// (request …)"; the text of a *dbsync.ValueError, a row this side
	// cannot send, it is answered with), is only here, not in
	// peer.Config.Logger. Default: discard.
	Logger *slog.Logger
}

type handler struct {
	*httpx.Responder
	node   *peer.Node
	cfg    Config
	bodies *httpx.Bodies
	stages *stages // apply bodies sent in parts, one per peer
}

// NewHandler returns an http.Handler serving a node to its peers: GET
// /hello, GET /changes, GET /cursor and POST /apply, every request signed
// with the mesh secret (peer.Signed).
func NewHandler(node *peer.Node, cfg *Config) http.Handler {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.MaxPageBytes <= 0 {
		c.MaxPageBytes = 64 << 20
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 30
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 5 * time.Minute
	}
	if c.StagedTTL <= 0 {
		c.StagedTTL = 24 * time.Hour
	}
	if c.MaxStagedBytes <= 0 {
		c.MaxStagedBytes = 4 << 30
	}
	if c.PreauthMemory <= 0 {
		c.PreauthMemory = 64 << 20
	}
	if c.PreauthDisk <= 0 {
		c.PreauthDisk = max(1<<30, c.MaxBodyBytes)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	p := &handler{Responder: &httpx.Responder{Log: c.Logger}, node: node, cfg: c,
		bodies: &httpx.Bodies{Mem: httpx.NewBudget(c.PreauthMemory), Disk: httpx.NewBudget(c.PreauthDisk), SpoolDir: c.SpoolDir},
		stages: newStages(c.SpoolDir, c.StagedTTL, c.MaxStagedBytes)}
	r := chi.NewRouter()
	r.Use(httpx.Deadlines{}.Middleware(), middleware.RequestID, p.Recoverer)
	r.Get("/hello", p.hello)
	r.Get("/changes", p.changes)
	r.Get("/cursor", p.cursor)
	r.Post("/apply", p.apply)
	p.Unrouted(r)
	return r
}

// auth reads and authenticates a request, returning the body (close it)
// and the requesting peer.
func (p *handler) auth(w http.ResponseWriter, r *http.Request, endpoint string) (*httpx.Body, uuid.UUID, error) {
	if len(p.cfg.Secret) == 0 {
		return nil, uuid.Nil, fmt.Errorf("%w: the serving node's handler has no mesh secret (peerhttp.Config.Secret): it refuses every request", dbsync.ErrUnauthorized)
	}
	if v := r.Header.Get(protocol.HeaderProtocol); v != strconv.Itoa(protocol.ProtocolVersion) {
		return nil, uuid.Nil, fmt.Errorf("%w: got %q", dbsync.ErrProtocolVersion, v)
	}
	if fp := r.Header.Get(protocol.HeaderSchema); fp != p.node.Schema() {
		return nil, uuid.Nil, fmt.Errorf("%w: the requesting node's schema %q is not this node's: the two nodes track different tables or columns (or foreign keys to integer-keyed tables)", dbsync.ErrSchemaMismatch, fp)
	}
	// GET /hello, /changes and /cursor have no body: one announced would
	// be read (up to MaxBodyBytes) before the signature is checked.
	if err := httpx.NoGetBody(r); err != nil {
		return nil, uuid.Nil, err
	}
	from, err := uuid.Parse(r.Header.Get(HeaderPeer))
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("%w: missing or malformed %s", dbsync.ErrUnauthorized, HeaderPeer)
	}
	ts, err := strconv.ParseInt(r.Header.Get(protocol.HeaderTimestamp), 10, 64)
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("%w: missing or malformed %s", dbsync.ErrUnauthorized, protocol.HeaderTimestamp)
	}
	if !protocol.ValidNonce(r.Header.Get(protocol.HeaderNonce)) {
		return nil, uuid.Nil, fmt.Errorf("%w: missing or malformed %s", dbsync.ErrUnauthorized, protocol.HeaderNonce)
	}
	if !signing.InWindow(time.Now(), ts, p.cfg.ClockSkew) {
		// Checked again, on the node's clock, by Authenticate; here only
		// to refuse before the body is read.
		return nil, uuid.Nil, fmt.Errorf("%w: timestamp outside the window", dbsync.ErrUnauthorized)
	}
	// Authenticate refuses a request whose body is still arriving once
	// the window closes: its body is not read further.
	b, err := p.bodies.Read(w, r, p.cfg.MaxBodyBytes, time.UnixMilli(ts).Add(p.cfg.ClockSkew))
	if errors.Is(err, dbsync.ErrTooLarge) {
		// A peer of this release sends a larger apply body in parts
		// within the limit this node announces: say which limit.
		return nil, uuid.Nil, fmt.Errorf("%w (this node's peerhttp.Config.MaxBodyBytes, which it announces in its hello: a peer of this release sends a larger body in parts within it)", err)
	}
	if err != nil {
		return nil, uuid.Nil, err
	}
	authed := false
	defer func() {
		if !authed { // a failure, or a panic: the budgets go back all the same
			b.Close()
		}
	}()
	s := &peer.Signed{Endpoint: endpoint, Query: r.URL.Query().Encode(), Peer: from, Timestamp: ts,
		Nonce: r.Header.Get(protocol.HeaderNonce), BodyHash: &b.Sum}
	if r.Header.Get(protocol.HeaderSignatureForm) == SignatureFormTarget {
		s.Target = p.node.ID()
	} else if p.cfg.RequireTargetSigned && endpoint != "hello" {
		return nil, uuid.Nil, fmt.Errorf("%w: the request is not signed for this node (peerhttp.Config.RequireTargetSigned; a peer of an earlier release signs without it)", dbsync.ErrUnauthorized)
	}
	if err := p.node.Authenticate(r.Context(), p.cfg.Secret, s, r.Header.Get(protocol.HeaderSignature), p.cfg.ClockSkew); err != nil {
		return nil, uuid.Nil, err
	}
	authed = true
	// The apply reads the body from its spool file while it applies it:
	// the budgets for bodies not yet authenticated go back now.
	b.Authenticated()
	return b, from, nil
}

func (p *handler) error(w http.ResponseWriter, r *http.Request, err error) {
	// A resync needed, the pushing peer's clock ahead (its fault, not the
	// server's), the two nodes' data in conflict (the rows named to the
	// authenticated peer): 409 with peer's code.
	if code := peer.Code(err); code != "" {
		p.Fail(w, r, http.StatusConflict, code, err.Error())
		return
	}
	p.Error(w, r, err)
}

func (p *handler) hello(w http.ResponseWriter, r *http.Request) {
	body, from, err := p.auth(w, r, "hello")
	if err != nil {
		p.error(w, r, err)
		return
	}
	body.Close()
	p.answer(w, "hello", r.Header.Get(protocol.HeaderNonce), Hello{Node: p.node.ID().String(), Schema: p.node.Schema(),
		MaxBody: p.cfg.MaxBodyBytes, Staged: p.stages.held(from), Signing: 2})
}

func (p *handler) changes(w http.ResponseWriter, r *http.Request) {
	body, from, err := p.auth(w, r, "changes")
	if err != nil {
		p.error(w, r, err)
		return
	}
	body.Close()
	q := r.URL.Query()
	after, err := ParsePosition(q)
	if err != nil {
		p.error(w, r, err)
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 0 {
		p.error(w, r, fmt.Errorf("%w: limit must be a non-negative integer", dbsync.ErrBadRequest))
		return
	}
	full, err := parseFlag(q, "full")
	if err != nil {
		p.error(w, r, err)
		return
	}
	b, err := p.node.Changes(r.Context(), after, limit, from, full)
	if err != nil {
		p.error(w, r, err)
		return
	}
	p.answer(w, "changes", r.Header.Get(protocol.HeaderNonce), b)
}

func (p *handler) cursor(w http.ResponseWriter, r *http.Request) {
	body, from, err := p.auth(w, r, "cursor")
	if err != nil {
		p.error(w, r, err)
		return
	}
	body.Close()
	pos, err := p.node.Cursor(r.Context(), from)
	if err != nil {
		p.error(w, r, err)
		return
	}
	p.answer(w, "cursor", r.Header.Get(protocol.HeaderNonce), pos)
}

// ParsePosition reads the position of GET /changes from its query: after
// (a non-negative integer), epoch (a UUID; absent: a position read before
// epochs, not checked) and own ("true" or absent). Anything else is a
// dbsync.ErrBadRequest.
func ParsePosition(q url.Values) (peer.Position, error) {
	bad := func(what string) (peer.Position, error) {
		return peer.Position{}, fmt.Errorf("%w: %s", dbsync.ErrBadRequest, what)
	}
	seq, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil || seq < 0 {
		return bad("after must be a non-negative integer")
	}
	pos := peer.Position{Seq: seq, Epoch: q.Get("epoch")}
	if !peer.ValidEpoch(pos.Epoch) {
		return bad("epoch must be a UUID in canonical form")
	}
	if pos.Own, err = parseFlag(q, "own"); err != nil {
		return peer.Position{}, err
	}
	return pos, nil
}

// parseFlag reads a flag of a query: "true" or absent (false). Anything
// else is a dbsync.ErrBadRequest.
func parseFlag(q url.Values, name string) (bool, error) {
	switch q.Get(name) {
	case "":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf(`%w: %s must be "true" or absent`, dbsync.ErrBadRequest, name)
}

func (p *handler) apply(w http.ResponseWriter, r *http.Request) {
	body, from, err := p.auth(w, r, "apply")
	if err != nil {
		p.error(w, r, err)
		return
	}
	defer body.Close()
	src := body.Reader()
	pt, err := parsePart(r.URL.Query())
	if err != nil {
		p.error(w, r, err)
		return
	}
	if pt != nil {
		// A part of a body sent in parts: staged, and with the last the
		// whole body is applied.
		received, whole, err := p.stages.add(from, pt, body.Len(), src)
		if err != nil {
			p.error(w, r, err)
			return
		}
		if whole == nil {
			p.answer(w, "apply", r.Header.Get(protocol.HeaderNonce), ApplyAnswer{Received: received})
			return
		}
		defer p.stages.discard(whole)
		if src, err = whole.buf.Reader(); err != nil {
			p.error(w, r, err)
			return
		}
	}
	// Read a page at a time from memory or from the spool file: the body
	// is never held whole.
	n, err := p.node.Apply(r.Context(), from, decodeBatches(src, p.cfg.MaxPageBytes))
	if err != nil {
		p.error(w, r, err)
		return
	}
	p.answer(w, "apply", r.Header.Get(protocol.HeaderNonce), ApplyAnswer{Applied: n})
}
