// Package handlers serves a [server.Server] over HTTP with chi. Mount the
// handler under any prefix of an application's router:
//
//	r := chi.NewRouter()
//	r.Mount("/sync", handlers.New(srv, nil))
//
// Routes (docs/protocol.md has the full wire format):
//
//	POST /register   the server's Config.AuthorizeRegister decides; rate-bounded per address
//	POST /push       signed
//	POST /push-chunk  signed; one chunk of a chunked push
//	POST /push-commit signed; applies a chunked push's chunks as one push
//	GET  /push-status signed; the chunks the server holds of a push
//	POST /pull       signed; response is a stream of JSON lines
//	GET  /repair     signed; response is a stream of JSON lines
//	GET  /query      signed
//	GET  /watch      signed; long poll: answers when a version after ?after= commits
//
// Every request carries the protocol version and the schema fingerprint;
// every request but register is signed with the node's secret (see
// protocol.Signed). Errors are JSON: {"error": {"code": …, "message": …}} with
// a status that matches the code.
//
// # Bodies and authentication
//
// A signed request is checked as far as it can be before its body is read:
// protocol version, schema (only looked up among the schemas served
// already: server.Server.LookupSchema), then its signature headers
// (server.Server.Precheck: timestamp window, nonce form, known node, nonce
// not used yet). Only then is the body read, and the signature verified
// over it; the nonce is recorded once it holds, and the view of a schema
// not served yet is built (server.Server.ForSchema). A body is at most
// Config.MaxPushBytes (push, default 256 MiB: one push of a few hundred
// thousand rows), Config.MaxChunkBytes (push-chunk, default 16 MiB),
// Config.MaxPullBytes (pull to a server with scopes, default 64 MiB: the
// keys a node holds) or Config.MaxBodyBytes (the others, pulls to a
// server without scopes included, default 1 MiB); a larger one is
// refused with 413, by its Content-Length before it is read.
// The whole request must arrive within the server's clock skew (default 5
// minutes) of its timestamp: a full-size push needs about 1 MB/s.
//
// Until it is authenticated, a body of up to 1 MiB is read into memory;
// a larger one, or one of unknown length, is hashed (SHA-256) while it is
// copied to a temporary file in Config.SpoolDir that has no name (on
// Linux; elsewhere it is unlinked at once) and is closed when the request
// ends. Across all requests, bodies not yet authenticated hold at most
// Config.PreauthMemory of memory (default 64 MiB; a spooled body counts
// its 64 KiB buffer) and Config.PreauthDisk of disk (default 1 GiB); a
// request whose Content-Length does not fit in what is left of them is
// answered 503 busy, with Retry-After, before its body is read, and one
// that fits takes them as its bytes arrive (503 busy once it outgrows
// them): a body announced large and sent slowly holds what it sent, not
// what it announced. A body still arriving when its request's timestamp
// window (server.Config.ClockSkew) closes is refused 401 without being
// read further (Verify would refuse it). A push's body is read into
// memory, to be decoded, once its signature holds, within
// Config.BodyMemory across all requests (503 busy beyond).
package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// Config tunes the handler. The zero value (or nil) is usable.
type Config struct {
	// Logger receives a line per failed request: the text of an internal
	// error, which the node is answered without ("internal error
	// (request …)"; the text of a *dbsync.ValueError, a row this side
	// cannot send, it is answered with), is only here, not in
	// server.Config.Logger. Default: discard.
	Logger *slog.Logger
	// MaxPushBytes bounds a push body. Default 256 MiB.
	MaxPushBytes int64
	// MaxChunkBytes bounds a chunk of a chunked push (POST /push-chunk).
	// Default 16 MiB.
	MaxChunkBytes int64
	// MaxPullBytes bounds a pull body on a server with scopes, where it
	// lists the keys of the rows the node holds in scoped tables (about 10
	// bytes per integer key, 39 per UUID): 64 MiB, the default, carries
	// about 6 million integer or 1.7 million UUID keys. A server without
	// scopes bounds pull bodies by MaxBodyBytes.
	MaxPullBytes int64
	// MaxBodyBytes bounds the other request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// PreauthMemory bounds the memory held, across all the requests of the
	// handler, by bodies not yet authenticated (register bodies included):
	// a body of up to 1 MiB counts what it received (its buffer, which
	// doubles as bytes arrive), a larger one is spooled to disk and counts
	// its 64 KiB buffer. A request whose Content-Length does not fit in
	// what is left, or whose bytes outgrow it, is answered 503 busy with
	// Retry-After. Default 64 MiB.
	PreauthMemory int64
	// PreauthDisk bounds likewise the disk held by spooled bodies not yet
	// authenticated. Default 1 GiB.
	PreauthDisk int64
	// BodyMemory bounds the memory held, across all the requests of the
	// handler, by authenticated bodies larger than 1 MiB (spooled, then
	// read into memory once the signature holds, and held until the
	// request is answered; decoding one takes a few times its size
	// more): an authenticated node, or a stolen credential, cannot
	// multiply MaxPushBytes by sending many pushes at once. A request
	// that would exceed it is answered 503 busy with Retry-After. Default
	// 1 GiB; never less than the largest body bound.
	BodyMemory int64
	// SpoolDir is where bodies larger than 1 MiB are spooled; each file
	// has no name (Linux's O_TMPFILE where the file system supports it;
	// elsewhere it is unlinked as soon as it is created, except on
	// Windows) and is closed when the request ends: a killed process
	// leaves none behind. Default os.TempDir().
	SpoolDir string

	// WatchTimeout is the longest a watch request (GET /watch) is held
	// before it is answered "no change"; a request may ask for less. It is
	// cut to 4/5 of the http.Server's WriteTimeout when that is set.
	// Default 25 s.
	WatchTimeout time.Duration
	// MaxWatchers bounds the watch requests held at once; one more is
	// answered 503 busy with Retry-After. Default 1000.
	MaxWatchers int
	// MaxWatchersPerNode bounds the watch requests of one node held at
	// once, so that one node cannot take every slot of MaxWatchers; one
	// more is answered 503 busy with Retry-After (once authenticated).
	// Default 4.
	MaxWatchersPerNode int
	// MaxStreamsPerNode bounds the pulls and repairs of one node answered
	// at once: each holds a snapshot of the database for as long as its
	// answer streams, and a pull on a server with scopes the keys the
	// node holds (about 90 bytes of memory a key: some 500 MiB for a body
	// of MaxPullBytes), so that one node's credential cannot multiply
	// that memory by opening many. One more is answered 503 busy with
	// Retry-After (once authenticated). Default 4. (A pull carried in a
	// watch answer counts among the node's watch requests,
	// MaxWatchersPerNode.)
	MaxStreamsPerNode int

	// RequireSignedSchema refuses (401 unauthorized) a signed request
	// whose signature does not cover its schema headers (X-Dbsync-Schema,
	// X-Dbsync-Tables, X-Dbsync-Nullable: form 2 of docs/protocol.md,
	// "Signing"). Clients of this release sign them; nodes of earlier
	// releases do not, so set it once every node has upgraded. Without
	// it, a party that can change a request in transit (plain HTTP) can
	// change the schema the server reads an old node's request against.
	RequireSignedSchema bool

	// Registration bounds registrations per source address (see
	// RateLimit). Default: 10 per minute, in bursts of up to 10.
	Registration RateLimit
	// Deadlines cut clients that send a body too slowly or stop reading a
	// response (see Deadlines; serve with NewHTTPServer for the
	// connection timeouts).
	Deadlines Deadlines
}

type handler struct {
	*httpx.Responder
	srv       *server.Server
	cfg       Config
	registers *limiter // registrations per address; nil: unbounded
	// bodies reads bodies within Config.PreauthMemory and PreauthDisk.
	bodies *httpx.Bodies
	// watchers counts the watch requests held (Config.MaxWatchers).
	watchers atomic.Int64
	// nodeWatchers counts them by node (Config.MaxWatchersPerNode),
	// nodeStreams the pulls and repairs answered (MaxStreamsPerNode).
	nodeWatchers, nodeStreams *nodeSlots
}

// nodeSlots counts the requests of each node held at once, up to max.
type nodeSlots struct {
	max int
	mu  sync.Mutex
	n   map[int64]int // a node holding none has no entry
}

// take counts a request of node; it reports false, counting nothing,
// when the node holds max already.
func (s *nodeSlots) take(node int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[node] >= s.max {
		return false
	}
	if s.n == nil {
		s.n = map[int64]int{}
	}
	s.n[node]++
	return true
}

// give ends a request take counted.
func (s *nodeSlots) give(node int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[node]--; s.n[node] <= 0 {
		delete(s.n, node)
	}
}

// New returns an http.Handler serving srv.
func New(srv *server.Server, cfg *Config) http.Handler {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxPushBytes <= 0 {
		c.MaxPushBytes = 256 << 20
	}
	if c.MaxChunkBytes <= 0 {
		c.MaxChunkBytes = 16 << 20
	}
	if c.MaxPullBytes <= 0 {
		c.MaxPullBytes = 64 << 20
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.PreauthMemory <= 0 {
		c.PreauthMemory = 64 << 20
	}
	if c.PreauthDisk <= 0 {
		c.PreauthDisk = 1 << 30
	}
	if c.BodyMemory <= 0 {
		c.BodyMemory = 1 << 30
	}
	// Below a body bound, a body that large would be answered busy for
	// ever (each retry alike): the budget holds at least the largest.
	c.BodyMemory = max(c.BodyMemory, c.MaxPushBytes, c.MaxChunkBytes, c.MaxPullBytes, c.MaxBodyBytes)
	if c.WatchTimeout <= 0 {
		c.WatchTimeout = 25 * time.Second
	}
	if c.MaxWatchers <= 0 {
		c.MaxWatchers = 1000
	}
	if c.MaxWatchersPerNode <= 0 {
		c.MaxWatchersPerNode = 4
	}
	if c.MaxStreamsPerNode <= 0 {
		c.MaxStreamsPerNode = 4
	}
	h := &handler{Responder: &httpx.Responder{Log: c.Logger}, srv: srv, cfg: c, registers: newLimiter(c.Registration),
		bodies: &httpx.Bodies{Mem: httpx.NewBudget(c.PreauthMemory), Disk: httpx.NewBudget(c.PreauthDisk),
			Authed: httpx.NewBudget(c.BodyMemory), SpoolDir: c.SpoolDir},
		nodeWatchers: &nodeSlots{max: c.MaxWatchersPerNode}, nodeStreams: &nodeSlots{max: c.MaxStreamsPerNode}}
	r := chi.NewRouter()
	r.Use(httpx.Deadlines(c.Deadlines).Middleware(), middleware.RequestID, h.Recoverer)
	r.Post("/register", h.register)
	r.Post("/push", h.push)
	r.Post("/push-chunk", h.pushChunk)
	r.Post("/push-commit", h.pushCommit)
	r.Get("/push-status", h.pushStatus)
	r.Post("/pull", h.pull)
	r.Get("/repair", h.repair)
	r.Get("/query", h.query)
	r.Get("/watch", h.watch)
	h.Unrouted(r)
	return r
}

// decode reads one JSON value from body into v; an empty body leaves v as
// it is.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON: %w", dbsync.ErrBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON body", dbsync.ErrBadRequest)
	}
	return nil
}

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	if !h.allowRegister(w, r) {
		return
	}
	body, _, srv, done, err := h.prepare(w, r, "register", h.cfg.MaxBodyBytes, true)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	var req protocol.RegisterRequest
	if err := decode(body, &req); err != nil {
		h.Error(w, r, err)
		return
	}
	// The server checks the schema headers once its hook accepts the
	// caller (server.Register).
	resp, err := srv.Register(r.Context(), &server.RegisterInfo{
		Request:     &req,
		Credentials: r.Header.Get("Authorization"),
		RemoteAddr:  clientAddr(r),
		Schema: &server.SchemaHeaders{Fingerprint: r.Header.Get(protocol.HeaderSchema),
			Tables: r.Header.Get(protocol.HeaderTables), Nullable: r.Header.Get(protocol.HeaderNullable)},
	})
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) push(w http.ResponseWriter, r *http.Request) {
	body, node, srv, done, err := h.prepare(w, r, "push", h.cfg.MaxPushBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		h.Error(w, r, fmt.Errorf("%w: empty push body", dbsync.ErrBadRequest))
		return
	}
	req, err := protocol.DecodePushRequest(body)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	resp, err := srv.Push(r.Context(), node, req)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) pushChunk(w http.ResponseWriter, r *http.Request) {
	body, node, srv, done, err := h.prepare(w, r, "push-chunk", h.cfg.MaxChunkBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		h.Error(w, r, fmt.Errorf("%w: empty chunk body", dbsync.ErrBadRequest))
		return
	}
	resp, err := srv.StagePushChunk(r.Context(), node, body)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) pushCommit(w http.ResponseWriter, r *http.Request) {
	body, node, srv, done, err := h.prepare(w, r, "push-commit", h.cfg.MaxBodyBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	var req protocol.PushCommit
	if err := decode(body, &req); err != nil {
		h.Error(w, r, err)
		return
	}
	resp, err := srv.CommitPush(r.Context(), node, &req)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) pushStatus(w http.ResponseWriter, r *http.Request) {
	_, node, srv, done, err := h.prepare(w, r, "push-status", h.cfg.MaxBodyBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	if len(q) != 1 || len(q["push_id"]) != 1 {
		h.Error(w, r, fmt.Errorf("%w: push-status takes one parameter, push_id", dbsync.ErrBadRequest))
		return
	}
	resp, err := srv.ChunkStatus(r.Context(), node, q.Get("push_id"))
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) pull(w http.ResponseWriter, r *http.Request) {
	// Only a server with scopes reads the keys a node holds: any other
	// pull body is small (its pending deletes, a backfill's schema).
	limit := h.cfg.MaxBodyBytes
	if h.srv.Scoped() {
		limit = h.cfg.MaxPullBytes
	}
	body, node, srv, done, err := h.prepare(w, r, "pull", limit, false)
	defer done()
	if errors.Is(err, dbsync.ErrTooLarge) && !h.srv.Scoped() {
		err = fmt.Errorf("%w (a server without scopes needs no held keys: its pull bodies are bounded by handlers.Config.MaxBodyBytes)", err)
	}
	if err != nil {
		h.Error(w, r, err)
		return
	}
	if !h.nodeStreams.take(node) {
		h.Error(w, r, h.streamsBusy(node))
		return
	}
	defer h.nodeStreams.give(node)
	var req protocol.PullRequest
	err = decode(body, &req)
	// Decoded, the body is no longer used: the answer's stream, which
	// may last long, holds none of Config.BodyMemory.
	done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	h.stream(w, r, func(emit server.Emit) error { return srv.Pull(r.Context(), node, &req, emit) })
}

func (h *handler) repair(w http.ResponseWriter, r *http.Request) {
	_, node, srv, done, err := h.prepare(w, r, "repair", h.cfg.MaxBodyBytes, false)
	done() // the body is not used: the stream holds none of Config.BodyMemory
	if err != nil {
		h.Error(w, r, err)
		return
	}
	if len(r.URL.Query()) > 0 {
		h.Error(w, r, fmt.Errorf("%w: repair takes no parameters", dbsync.ErrBadRequest))
		return
	}
	if !h.nodeStreams.take(node) {
		h.Error(w, r, h.streamsBusy(node))
		return
	}
	defer h.nodeStreams.give(node)
	h.stream(w, r, func(emit server.Emit) error { return srv.Repair(r.Context(), node, emit) })
}

// streamsBusy refuses a pull or repair of a node answered
// Config.MaxStreamsPerNode of them already.
func (h *handler) streamsBusy(node int64) error {
	return fmt.Errorf("%w: node %d has %d pulls and repairs answered at once, the most this server answers for a node (retry later)", dbsync.ErrBusy, node, h.cfg.MaxStreamsPerNode)
}

// stream runs a streamed procedure. Until its first line the procedure may
// still fail with an ordinary error response; after it, a failure ends the
// stream with an error line (and no end line).
func (h *handler) stream(w http.ResponseWriter, r *http.Request, run func(server.Emit) error) {
	rc := http.NewResponseController(w)
	started := false
	var line []byte
	write := func(m *protocol.Message) error {
		var err error
		if line, err = protocol.AppendMessage(line[:0], m); err != nil {
			return err
		}
		if len(line) > protocol.MaxLineBytes {
			// A client refuses the line: fail in words that say why.
			// The server splits lines of large rows (emitOps): one row,
			// with the rows it references, is this large.
			return fmt.Errorf("%w: a %s line of %d bytes exceeds protocol.MaxLineBytes (%d): a row too large to send",
				dbsync.ErrTooLarge, m.Type, len(line), protocol.MaxLineBytes)
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		return rc.Flush()
	}
	err := run(func(m *protocol.Message) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		return write(m)
	})
	switch {
	case err == nil:
	case !started:
		h.Error(w, r, err)
	default:
		d := h.Detail(r, err)
		_ = write(&protocol.Message{Type: protocol.MsgError, Error: &d})
	}
}

func (h *handler) query(w http.ResponseWriter, r *http.Request) {
	_, node, srv, done, err := h.prepare(w, r, "query", h.cfg.MaxBodyBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	req, err := protocol.ParseQuery(r.URL.Query())
	if err != nil {
		h.Error(w, r, err)
		return
	}
	resp, err := srv.Query(r.Context(), node, req)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}
