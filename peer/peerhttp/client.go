// Package peerhttp carries peer-to-peer sync (package peer) over HTTP: the
// handler serving a node to its peers ([NewHandler]) and the client side
// ([Peer], a peer.Peer reached at a URL). Every request is signed with the
// mesh secret (peer.Signed) and authenticated by the serving node
// (peer.Node.Authenticate); every successful answer is signed too, over
// the request's nonce and the answer's body ([HeaderAnswer]), and checked
// by [Peer] before it is used. The handler bounds the bodies it reads
// before authentication as package handlers does for the server, and each
// request's body by [Config].MaxBodyBytes, which it announces: [Peer]
// sends a larger apply body in parts, applied together with the last.
//
//	r.Mount("/peer", peerhttp.NewHandler(node, &peerhttp.Config{Secret: secret}))
//	// on another node
//	other := &peerhttp.Peer{URL: "http://other:8080/peer", Secret: secret, Self: node}
//	report, err := node.Sync(ctx, other)
package peerhttp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpclient"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

// Peer reaches a peer served by NewHandler.
type Peer struct {
	// URL is where the peer's handler is mounted.
	URL string
	// Secret is the mesh secret shared by the peers (required: without
	// it every call fails).
	Secret []byte
	// Self is the node making the requests (required: without it every
	// call fails).
	Self *peer.Node
	// Client sends the requests (default http.DefaultClient).
	Client *http.Client
	// MaxAnswer bounds one answer read from the peer (a page of changes is
	// the largest); a longer one fails the call. Default 256 MiB.
	MaxAnswer int64
	// SpoolDir is where Apply writes a body over 1 MiB before sending it
	// ("": os.TempDir()).
	SpoolDir string
	// MaxPart bounds the body of one apply request (a proxy's limit
	// between the nodes, say): Apply sends a larger body in parts within
	// it and within the peer's Config.MaxBodyBytes, which the peer
	// announces in its hello. Default: the peer's limit only. A peer of
	// an earlier release, which announces no limit, takes no parts: it is
	// sent a body whole. A limit below MinPartBytes (the peer's, or this),
	// or a body that would take more than MaxParts parts, fails the apply
	// before anything is sent.
	MaxPart int64
	// StallTimeout bounds each wait for the peer's answer: for its
	// headers to a GET (hello, changes, cursor: answered without delay),
	// and for each read of any answer's body. Past it the call fails with
	// dbsync.ErrNetwork naming it, nothing applied, so a peer, or any
	// party answering at URL, that stalls without closing cannot hold a
	// sync for ever. The wait for an apply's answer, which comes once the
	// peer applied the body, is bounded by ctx only. Default 60 s;
	// negative: no bound (then only ctx bounds a call).
	StallTimeout time.Duration

	// hello is the peer's last hello (ID), nil before the first.
	hello atomic.Pointer[Hello]
}

var _ peer.Peer = (*Peer)(nil)

// Hello is the answer of GET /hello.
type Hello struct {
	Node   string `json:"node"`
	Schema string `json:"schema"`
	// MaxBody is the node's Config.MaxBodyBytes: the largest request
	// body it accepts (absent from a node of an earlier release, which
	// takes no body in parts).
	MaxBody int64 `json:"max_body,omitempty"`
	// Staged is what the node holds of an apply body the requesting
	// node was sending in parts when it stopped, if anything.
	Staged *Staged `json:"staged,omitempty"`
	// Signing is 2 from a node that verifies requests signed for it
	// (SignatureFormTarget): the requesting node signs its later requests
	// so (absent from a node of an earlier release: signed without).
	Signing int `json:"signing,omitempty"`
}

// SignatureFormTarget is the protocol.HeaderSignatureForm of a request
// whose signature covers the serving node's identity (peer.Signed.Target).
const SignatureFormTarget = "2"

// Staged describes the parts a node holds of a peer's apply body: the
// body's upload id, the bytes received from its start, and their SHA-256
// (lowercase hex). A sender whose body starts with those bytes sends the
// rest only.
type Staged struct {
	Upload   string `json:"upload"`
	Received int64  `json:"received"`
	SHA256   string `json:"sha256"`
}

// CursorAnswer is the answer of GET /cursor: the answering node's
// position in the requesting node's feed.
type CursorAnswer = peer.Position

// ApplyAnswer is the answer of POST /apply.
type ApplyAnswer struct {
	Applied int `json:"applied"`
	// Received is, for a part of a body sent in parts other than the
	// last, the bytes of the body received so far (nothing is applied
	// before the last part).
	Received int64 `json:"received,omitempty"`
}

// errNoSecret fails the calls of a Peer without Secret: the peer would
// refuse every request.
var errNoSecret = errors.New("peerhttp: Peer.Secret is empty: set it to the mesh secret")

// errNoSelf fails the calls of a Peer without Self.
var errNoSelf = errors.New("peerhttp: Peer.Self is nil: set it to the node making the requests")

func (p *Peer) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return http.DefaultClient
}

// call sends a signed request to endpoint and decodes its signed answer
// into v (readAnswer). body is nil for a request without one. A request
// answered replayed is signed again with a new nonce and sent once more
// (httpclient.ResendReplayed): it reached the peer twice, the first
// copy's answer lost.
//
// StallTimeout bounds the wait for a GET's answer headers, and each read
// of the answer's body.
func (p *Peer) call(ctx context.Context, method, endpoint string, q url.Values, body *requestBody, v any) (err error) {
	var guard *stallGuard
	if d := p.stallTimeout(); d > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		guard = &stallGuard{wait: d}
		guard.timer = time.AfterFunc(d, func() {
			cancel(fmt.Errorf("%w: no bytes of the %s answer came for %s (peerhttp.Peer.StallTimeout)", dbsync.ErrNetwork, endpoint, d))
		})
		defer guard.timer.Stop()
		if method != http.MethodGet {
			guard.timer.Stop() // (an apply is answered once applied)
		}
		defer func() {
			if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w: %w", cause, err)
			}
		}()
	}
	var nonce string
	resp, err := httpclient.ResendReplayed(ctx, func() (resp *http.Response, err error) {
		resp, nonce, err = p.do(ctx, method, endpoint, q, body)
		return resp, err
	})
	if err != nil {
		return err
	}
	if guard != nil {
		guard.timer.Stop()
		guard.ReadCloser, resp.Body = resp.Body, guard
	}
	return p.readAnswer(resp, endpoint, nonce, v)
}

// stallTimeout is StallTimeout with its default (0: no bound).
func (p *Peer) stallTimeout() time.Duration {
	switch {
	case p.StallTimeout < 0:
		return 0
	case p.StallTimeout == 0:
		return 60 * time.Second
	}
	return p.StallTimeout
}

// stallGuard bounds each read of an answer's body by wait: its timer ends
// the request's context when a read waits longer.
type stallGuard struct {
	io.ReadCloser
	wait  time.Duration
	timer *time.Timer
}

func (g *stallGuard) Read(b []byte) (int, error) {
	g.timer.Reset(g.wait)
	defer g.timer.Stop()
	return g.ReadCloser.Read(b)
}

// requestBody is a request's body, read from its start by each send
// (net/http reads it again when it retries), and its SHA-256, which the
// signature covers.
type requestBody struct {
	r   *io.SectionReader
	sum [sha256.Size]byte
}

func (p *Peer) do(ctx context.Context, method, endpoint string, q url.Values, body *requestBody) (*http.Response, string, error) {
	if p.Self == nil {
		return nil, "", errNoSelf
	}
	if len(p.Secret) == 0 {
		return nil, "", errNoSecret
	}
	u := strings.TrimRight(p.URL, "/") + "/" + endpoint
	query := ""
	if q != nil {
		query = q.Encode()
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, "", err
	}
	s := &peer.Signed{Endpoint: endpoint, Query: query, Peer: p.Self.ID(), Timestamp: time.Now().UnixMilli(), Nonce: protocol.NewNonce()}
	form := ""
	if h := p.hello.Load(); h != nil && h.Signing >= 2 && endpoint != "hello" {
		// Signed for this peer alone: captured, the request cannot be
		// replayed to another node of the mesh.
		if target, err := uuid.Parse(h.Node); err == nil {
			s.Target, form = target, SignatureFormTarget
		}
	}
	if body != nil {
		open := func() (io.ReadCloser, error) {
			if body.r.Size() == 0 {
				return http.NoBody, nil // (a Body with length 0 would go chunked)
			}
			return io.NopCloser(io.NewSectionReader(body.r, 0, body.r.Size())), nil
		}
		req.Body, _ = open()
		req.GetBody, req.ContentLength = open, body.r.Size()
		s.BodyHash = &body.sum
	}
	httpclient.SetHeaders(req.Header, p.Self.Schema(), "", &httpclient.Signature{SenderHeader: HeaderPeer, Sender: s.Peer.String(),
		Timestamp: s.Timestamp, Nonce: s.Nonce, Signature: s.Sign(p.Secret), Form: form})
	resp, err := httpclient.Do(ctx, p.client(), req, endpoint, peerError)
	return resp, s.Nonce, err
}

// peerError returns the error of the codes only peers answer, or nil.
func peerError(code string) error { return peer.ErrorForCode(code) }

// HeaderPeer carries the requesting peer's identity.
const HeaderPeer = "X-Dbsync-Peer"

// CodeResync is the error code of peer.ErrResync on the wire.
const CodeResync = peer.CodeResync

// CodeClockSkew is the error code of peer.ErrClockSkew on the wire.
const CodeClockSkew = peer.CodeClockSkew

// CodeConstraint is the error code of peer.ErrConstraint on the wire.
const CodeConstraint = peer.CodeConstraint

// ID implements peer.Peer: GET /hello. It also checks the schemas match.
func (p *Peer) ID(ctx context.Context) (uuid.UUID, error) {
	var h Hello
	if err := p.call(ctx, http.MethodGet, "hello", nil, nil, &h); err != nil {
		return uuid.Nil, err
	}
	if h.Schema != p.Self.Schema() {
		return uuid.Nil, fmt.Errorf("%w: peer schema %s, ours %s: the two nodes track different tables or columns (or foreign keys to integer-keyed tables)", dbsync.ErrSchemaMismatch, h.Schema, p.Self.Schema())
	}
	p.hello.Store(&h)
	return uuid.Parse(h.Node)
}

// Changes implements peer.Peer: GET /changes.
func (p *Peer) Changes(ctx context.Context, after peer.Position, limit int, _ uuid.UUID, full bool) (*peer.Batch, error) {
	q := url.Values{"after": {strconv.FormatInt(after.Seq, 10)}, "limit": {strconv.Itoa(limit)}}
	if full {
		q.Set("full", "true")
	}
	if after.Own {
		q.Set("own", "true")
	}
	if after.Epoch != "" {
		q.Set("epoch", after.Epoch)
	}

	var b peer.Batch
	if err := p.call(ctx, http.MethodGet, "changes", q, nil, &b); err != nil {
		if over := (*peer.LimitError)(nil); errors.As(err, &over) && limit != 1 {
			return nil, p.overAnswer(ctx, q, over, err)
		}
		return nil, err
	}
	if !peer.ValidEpoch(b.Epoch) {
		// Taken, it would be the cursor's epoch, and the peer would take
		// it, sent back, for a restore of its own.
		return nil, fmt.Errorf("%w: the changes answer's epoch %q is not a UUID in canonical form", dbsync.ErrBadResponse, b.Epoch)
	}
	return &b, nil
}

// overAnswer is the error of a changes answer over MaxAnswer (err, over):
// it asks the page again with one change, to tell a row that alone is
// larger than MaxAnswer, which no page can carry (over.Row), from pages
// of many rows over it (the peer's peer.Config.MaxBatchBytes is not below
// MaxAnswer). Either way the pull fails, nothing applied.
func (p *Peer) overAnswer(ctx context.Context, q url.Values, over *peer.LimitError, err error) error {
	one := maps.Clone(q)
	one.Set("limit", "1")
	var b peer.Batch
	perr := p.call(ctx, http.MethodGet, "changes", one, nil, &b)
	if row := (*peer.LimitError)(nil); errors.As(perr, &row) {
		row.Row = true
		return perr
	}
	if perr != nil {
		return err
	}
	return fmt.Errorf("%w (pages of many rows: the peer's peer.Config.MaxBatchBytes must be below it)", err)
}

// Cursor implements peer.Peer: GET /cursor (the peer's cursor for Self).
func (p *Peer) Cursor(ctx context.Context, node uuid.UUID) (peer.Position, error) {
	if p.Self == nil {
		return peer.Position{}, errNoSelf
	}
	if node != p.Self.ID() {
		return peer.Position{}, errors.New("peer: an HTTP peer reports only the requesting node's cursor")
	}
	var c CursorAnswer
	if err := p.call(ctx, http.MethodGet, "cursor", nil, nil, &c); err != nil {
		return peer.Position{}, err
	}
	if !c.Valid() {
		// Taken, it would count as a restore of Self, which would send
		// the peer its whole state.
		return peer.Position{}, fmt.Errorf("%w: the cursor answer %+v is not a position (pulled_seq not negative, epoch a UUID in canonical form)", dbsync.ErrBadResponse, c)
	}
	return c, nil
}

// Apply implements peer.Peer: POST /apply with the pages as JSON lines.
// The signature covers the whole body, so it is written out first, while
// hashed: in memory up to 1 MiB, beyond in a temporary file in SpoolDir,
// so that a backlog of any size is sent with memory for about one page.
// A body larger than the peer accepts in one request (the MaxBodyBytes it
// announces in its hello, and MaxPart) goes in parts within that limit,
// one request each (sendParts): the peer applies the whole body with the
// last part, in one transaction. When the peer's hello says it holds the
// first bytes of this very body (Hello.Staged: a transfer cut between
// parts), only the rest is sent.
func (p *Peer) Apply(ctx context.Context, from uuid.UUID, next func() (*peer.Batch, error)) (int, error) {
	if p.Self == nil {
		return 0, errNoSelf
	}
	if from != p.Self.ID() {
		return 0, errors.New("peer: an HTTP peer accepts only the requesting node's changes")
	}
	buf := &spool.Buffer{Dir: p.SpoolDir}
	defer buf.Discard()
	hash := sha256.New()
	enc := json.NewEncoder(io.MultiWriter(buf, hash))
	for {
		b, err := next()
		if err != nil {
			return 0, err
		}
		if b == nil {
			break
		}
		if err := enc.Encode(b); err != nil {
			return 0, fmt.Errorf("peerhttp: apply body: %w", err)
		}
	}
	body := &requestBody{}
	hash.Sum(body.sum[:0])
	var err error
	if body.r, err = buf.Reader(); err != nil {
		return 0, fmt.Errorf("peerhttp: apply body: %w", err)
	}
	h, err := p.lastHello(ctx)
	if err != nil {
		return 0, err
	}
	if limit := p.partLimit(h); limit > 0 && body.r.Size() > limit {
		upload, from, err := resumable(h.Staged, body.r)
		if err != nil {
			return 0, err
		}
		if err := p.checkParts(h, limit, body.r.Size()-from); err != nil {
			return 0, err
		}
		return p.sendParts(ctx, body.r, limit, upload, from)
	}
	var a ApplyAnswer
	if err := p.call(ctx, http.MethodPost, "apply", nil, body, &a); err != nil {
		return 0, err
	}
	return a.Applied, nil
}

// lastHello returns the peer's hello from its last ID (asked now when
// Apply comes first), and forgets what it says the peer holds of a body:
// the apply about to be sent changes it.
func (p *Peer) lastHello(ctx context.Context) (*Hello, error) {
	h := p.hello.Load()
	if h == nil {
		if _, err := p.ID(ctx); err != nil {
			return nil, err
		}
		h = p.hello.Load()
	}
	rest := *h
	rest.Staged = nil
	p.hello.CompareAndSwap(h, &rest)
	return h, nil
}

// partLimit returns the largest apply body to send in one request: the
// least of MaxPart and the MaxBodyBytes the peer announced in hello h, 0
// for no limit (a peer of an earlier release, which announces none, takes
// a body whole only).
func (p *Peer) partLimit(h *Hello) int64 {
	if h.MaxBody <= 0 {
		return 0
	}
	if p.MaxPart > 0 {
		return min(h.MaxBody, p.MaxPart)
	}
	return h.MaxBody
}

// MinPartBytes is the smallest part limit Apply sends a body in: a peer
// announcing a smaller max_body in its hello, or a Peer.MaxPart below it,
// fails the apply rather than taking a request per handful of bytes.
const MinPartBytes = 1 << 10

// MaxParts bounds the requests (parts) one apply body takes: a body that
// would take more, at the part limit (the peer's max_body, Peer.MaxPart),
// fails the apply with dbsync.ErrTooLarge, nothing sent.
const MaxParts = 10000

// checkParts refuses to send n bytes of a body in parts of at most limit
// bytes when the limit is below MinPartBytes or the parts would be more
// than MaxParts: a hello announcing a tiny max_body (a node misconfigured,
// or hostile) would otherwise take a request per byte or so.
func (p *Peer) checkParts(h *Hello, limit, n int64) error {
	if limit < MinPartBytes {
		if p.MaxPart > 0 && p.MaxPart < MinPartBytes {
			return fmt.Errorf("peerhttp: Peer.MaxPart is %d bytes, below the %d an apply body is sent in parts of (peerhttp.MinPartBytes)", p.MaxPart, MinPartBytes)
		}
		return fmt.Errorf("%w: the peer's hello announces max_body %d, below the %d bytes an apply body is sent in parts of (peerhttp.MinPartBytes): raise its peerhttp.Config.MaxBodyBytes",
			dbsync.ErrBadResponse, h.MaxBody, MinPartBytes)
	}
	if parts := (n + limit - 1) / limit; parts > MaxParts {
		return fmt.Errorf("%w: an apply body of %d bytes would take %d requests of at most %d bytes (the peer's max_body %d, Peer.MaxPart %d), more than peerhttp.MaxParts (%d): raise the limits",
			dbsync.ErrTooLarge, n, parts, limit, h.MaxBody, p.MaxPart, MaxParts)
	}
	return nil
}

// resumable returns where to send body from: the upload and the bytes of
// it the peer holds (staged, from its hello) when body starts with those
// bytes, else a new upload from byte 0.
func resumable(staged *Staged, body *io.SectionReader) (uuid.UUID, int64, error) {
	if staged == nil || staged.Received <= 0 || staged.Received >= body.Size() {
		return uuid.New(), 0, nil
	}
	upload, err := uuid.Parse(staged.Upload)
	if err != nil {
		return uuid.New(), 0, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(body, 0, staged.Received)); err != nil {
		return uuid.Nil, 0, fmt.Errorf("peerhttp: apply body: %w", err)
	}
	if hex.EncodeToString(sum.Sum(nil)) != staged.SHA256 {
		return uuid.New(), 0, nil
	}
	return upload, staged.Received, nil
}

// sendParts sends body from byte from in parts of at most limit bytes, in
// order, under upload, and returns the answer of the last, which applies
// the whole body. A part before the last that fails fails the apply with
// nothing applied: the next apply resumes the body where the peer's
// parts end, or sends it again from its first part.
func (p *Peer) sendParts(ctx context.Context, body *io.SectionReader, limit int64, upload uuid.UUID, from int64) (int, error) {
	size := body.Size()
	for off := from; ; off += limit {
		pt := part{upload: upload, offset: off, more: off+limit < size}
		rb := &requestBody{r: io.NewSectionReader(body, off, min(limit, size-off))}
		hash := sha256.New()
		if _, err := io.Copy(hash, io.NewSectionReader(rb.r, 0, rb.r.Size())); err != nil {
			return 0, fmt.Errorf("peerhttp: apply body: %w", err)
		}
		hash.Sum(rb.sum[:0])
		var a ApplyAnswer
		if err := p.call(ctx, http.MethodPost, "apply", pt.query(), rb, &a); err != nil {
			return 0, err
		}
		if !pt.more {
			return a.Applied, nil
		}
		if want := off + rb.r.Size(); a.Received != want {
			return 0, fmt.Errorf("%w: the peer received %d bytes of the apply body, not the %d sent", dbsync.ErrBadResponse, a.Received, want)
		}
	}
}

// DecodeBatches returns a page iterator over a body of JSON lines, as POST
// /apply receives it.
func DecodeBatches(r io.Reader) func() (*peer.Batch, error) { return decodeBatches(r, 0) }

// decodeBatches is DecodeBatches with each page bounded by max bytes (0:
// none): the decoder reads no more than about max bytes of a page before
// the page fails, with a *peer.LimitError naming
// peerhttp.Config.MaxPageBytes and the page's first row
// (dbsync.ErrTooLarge: 413).
func decodeBatches(r io.Reader, max int64) func() (*peer.Batch, error) {
	bound := &pageBound{r: bufio.NewReader(r), max: max}
	dec := json.NewDecoder(bound)
	bound.dec = dec
	return func() (*peer.Batch, error) {
		var b peer.Batch
		if err := dec.Decode(&b); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			if errors.Is(err, errPageOver) {
				head := make([]byte, 4<<10)
				k, _ := io.ReadFull(dec.Buffered(), head)
				over := (&peer.LimitError{Limit: "peerhttp.Config.MaxPageBytes", Max: max}).NameRow(head[:k])
				return nil, over
			}
			return nil, fmt.Errorf("%w: %w", dbsync.ErrBadRequest, err)
		}
		if !peer.ValidEpoch(b.Epoch) {
			return nil, fmt.Errorf("%w: a page's epoch %q is not a UUID in canonical form", dbsync.ErrBadRequest, b.Epoch)
		}
		return &b, nil
	}
}

// errPageOver stops a decoder past the bound of one page.
var errPageOver = errors.New("peerhttp: page over its bound")

// pageBound reads for dec no more than about max bytes past the end of
// the last value dec decoded (0: no bound).
type pageBound struct {
	r    io.Reader
	dec  *json.Decoder
	read int64
	max  int64
}

func (b *pageBound) Read(p []byte) (int, error) {
	if b.max > 0 {
		left := b.max + 1 - (b.read - b.dec.InputOffset())
		if left <= 0 {
			return 0, errPageOver
		}
		p = p[:min(int64(len(p)), left)]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}
