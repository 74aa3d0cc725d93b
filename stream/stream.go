// Package stream synchronizes two databases over any bidirectional byte
// stream — a net.Conn, a TLS connection, net.Pipe — as LipSync did, done
// well: rows are identified by their UUID or text primary key (or, for an
// integer key, the sync_uuid column package peer adds), inserts, updates and deletes travel both ways
// with last-write-wins versions (package peer), the two ends authenticate
// each other with a shared secret (HMAC challenge and response over fresh
// nonces, so a recorded session cannot be replayed; Serve's end answers
// only a valid proof, so that a party without the secret gets no MAC
// under it), every frame after the
// handshake carries a MAC under a per-session, per-direction key and a
// sequence number (an altered, injected, dropped, reordered or replayed
// frame ends the session with ErrAuth before anything is applied), each end
// applies what it receives in one transaction, and reading and writing run
// concurrently so large tables cannot deadlock. The connection is closed
// after use.
//
//	// one end (TLS with a *tls.Config, plain TCP with nil; or Serve on
//	// any net.Listener)
//	go stream.Listen(ctx, "tcp", ":9000", tlsServerConfig, node, &stream.Config{Secret: secret})
//	// the other
//	conn, _ := tls.Dial("tcp", "host:9000", tlsClientConfig)
//	report, err := stream.Sync(ctx, conn, otherNode, &stream.Config{Secret: secret})
//
// Confidentiality is the transport's job: use TLS across networks.
package stream

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

// Version is the stream protocol version (2: frames after the handshake
// carry a MAC).
const Version = 2

// Config tunes a session.
type Config struct {
	// Secret is shared by the two ends (required).
	Secret []byte
	// IdleTimeout bounds each wait without progress, when the connection
	// has deadlines (net.Conn): for the first bytes of the next frame, for
	// each further read of a frame arriving, and for each piece (64 KiB)
	// of a frame leaving. A frame that moves steadily, however slowly, is
	// not cut (over a slow link a large page takes longer). Default 30 s.
	IdleTimeout time.Duration
	// ApplyTimeout bounds the wait for the other end's COMMIT frame, which
	// comes once it has applied all this end's pages (a large backlog
	// takes longer than IdleTimeout), on any connection, with deadlines
	// or not. Default 10 minutes.
	ApplyTimeout time.Duration
	// MaxFrame bounds one frame. Default DefaultMaxFrame.
	MaxFrame int
	// MaxReceive bounds the pages one session receives, in bytes, spooled
	// (past 1 MiB to a temporary file) before they are applied: beyond,
	// the session fails (ErrFrame) and nothing is applied. Default 4 GiB.
	MaxReceive int64
	// SpoolDir is where that file goes, unlinked ("": os.TempDir(),
	// which on Android is not writable by apps: set it there). It must be
	// an existing directory: Sync, Serve and Listen refuse one that is
	// not, before any session.
	SpoolDir string
	// HandshakeTimeout bounds the handshake (HELLO and AUTH frames, both
	// ways): a party that does not prove it holds the secret by then is
	// cut. Default 10 s.
	HandshakeTimeout time.Duration
	// MaxSessions bounds the authenticated sessions Serve and Listen run
	// at once; a party that authenticates beyond it gets a failure
	// ("busy") and the connection closes. Connections still in their
	// handshake are bounded apart, by as many: a new one beyond closes
	// the oldest, so that parties without the secret cannot hold every
	// place. Default 64.
	MaxSessions int
	// Logger receives a line per session. Default: discard.
	Logger *slog.Logger
}

// Errors.
var (
	// ErrAuth: the other end does not hold the secret (or replayed an old
	// session). The end that dialed a Serve gets ErrRemote instead when
	// its own proof is refused ("authentication failed", no sentinel:
	// Serve's end sends no proof of its own to a party it could not
	// authenticate, and says nothing more).
	ErrAuth = errors.New("stream: authentication failed")
	// ErrRemote: the other end reported an error and ended the session.
	ErrRemote = errors.New("stream: the other end failed")
	// ErrNoSecret: Config.Secret is empty. Sync refuses to run (and
	// closes the connection) without one; Serve and Listen return it at
	// once, accepting nothing.
	ErrNoSecret = errors.New("stream: Config.Secret is required")
)

// Report describes a session.
type Report struct {
	Peer uuid.UUID
	// Received counts the versions applied here; Sent those the other end
	// applied.
	Received, Sent int
	Duration       time.Duration
}

// String summarizes the session on one line, e.g. "with 1f0c…: received 2
// version(s), sent 1 version(s)" (the other end's full identity).
func (r *Report) String() string {
	return fmt.Sprintf("with %s: received %d version(s), sent %d version(s)", r.Peer, r.Received, r.Sent)
}

type hello struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	Nonce   string `json:"nonce"`
	Schema  string `json:"schema"`
}

type auth struct {
	MAC string `json:"mac"`
}

// cursor is a CURSOR frame: how far the sending end has applied the
// other end's feed.
type cursor = peer.Position

type commit struct {
	Applied int `json:"applied"`
}

type failure struct {
	Message string `json:"message"`
	// Code names the refusal (peer.Code's, or dbsync.Code's): the other
	// end's error then wraps the same sentinel, for errors.Is. Absent for
	// an internal error.
	Code string `json:"code,omitempty"`
}

// failureCode is the code of err in an error frame ("": none).
func failureCode(err error) string {
	if c := peer.Code(err); c != "" {
		return c
	}
	if c := dbsync.Code(err); c != protocol.CodeInternal {
		return c
	}
	return ""
}

// remoteError is the other end's failure: ErrRemote, and the sentinel its
// code names (nil: none).
type remoteError struct {
	msg   string
	cause error
}

func (e *remoteError) Error() string { return ErrRemote.Error() + ": " + e.msg }

func (e *remoteError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrRemote}
	}
	return []error{ErrRemote, e.cause}
}

// remoteCause is the sentinel of an error frame's code, or nil.
func remoteCause(code string) error {
	if code == "" {
		return nil
	}
	if err := peer.ErrorForCode(code); err != nil {
		return err
	}
	if err := dbsync.ErrorForCode(code); err != dbsync.ErrInternal {
		return err
	}
	return nil
}

// session is one end of a sync.
type session struct {
	conn io.ReadWriteCloser
	r    *bufio.Reader
	// in is what r reads from: the connection, its read deadline
	// extended before each read while a frame is awaited (next).
	in   *progressReader
	cfg  Config
	node *peer.Node

	out       chan outFrame
	writeErr  chan error
	closeOnce sync.Once

	// sendKey seals the frames this end sends after its AUTH frame; it is
	// set by the session goroutine before any such frame is queued.
	sendKey []byte
	// recvKey checks the frames the other end sends after its AUTH frame;
	// recvSeq numbers them. Only the session goroutine reads.
	recvKey []byte
	recvSeq uint64
	// wait bounds the wait for the next frame (IdleTimeout when 0; no
	// bound when negative, the deadline set apart).
	wait time.Duration
	// admit, when set (Serve), is called once the other end authenticated
	// and the handshake ended: an error (no place) ends the session.
	admit func() error
	// handshook ends the handshake's deadline (once).
	handshook func()
	// verifyFirst (Serve's sessions) checks the other end's AUTH frame
	// before this end sends its own: a party that connects without the
	// secret gets no MAC under it (to guess the secret offline from).
	verifyFirst bool
}

type outFrame struct {
	typ     byte
	payload []byte
	key     []byte // nil: sent bare (handshake)
}

// Sync runs one session over conn and closes it. Both ends may call Sync;
// Serve calls it for each accepted connection. Without Config.Secret
// (ErrNoSecret), or with a Config.SpoolDir that is not an existing
// directory, it closes conn and fails at once.
func Sync(ctx context.Context, conn io.ReadWriteCloser, node *peer.Node, cfg *Config) (*Report, error) {
	return syncConn(ctx, conn, node, cfg, nil, nil)
}

// check refuses a configuration no session can run with: no Secret
// (ErrNoSecret), a SpoolDir that is not a directory.
func (c *Config) check() error {
	if len(c.Secret) == 0 {
		return ErrNoSecret
	}
	if err := spool.CheckDir(c.SpoolDir); err != nil {
		return fmt.Errorf("stream: Config.SpoolDir: %w", err)
	}
	return nil
}

// syncConn is Sync, with admit called once the other end authenticated
// (Serve's places) and handshook called when the handshake ends, either
// way (nil: none).
func syncConn(ctx context.Context, conn io.ReadWriteCloser, node *peer.Node, cfg *Config, admit func() error, handshook func()) (*Report, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if err := c.check(); err != nil {
		conn.Close()
		return nil, err
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 10 * time.Minute
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxReceive <= 0 {
		c.MaxReceive = 4 << 30
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{conn: conn, cfg: c, node: node,
		out: make(chan outFrame, 16), writeErr: make(chan error, 1), admit: admit, verifyFirst: admit != nil}
	s.in = &progressReader{conn: conn}
	s.in.dl, _ = conn.(interface{ SetReadDeadline(time.Time) error })
	s.r = bufio.NewReaderSize(s.in, 1<<16)
	// The handshake has a deadline of its own: a party without the secret
	// holds the connection at most that long, however it trickles.
	var handshake sync.Once
	cut := time.AfterFunc(c.HandshakeTimeout, func() { conn.Close() })
	s.handshook = func() {
		handshake.Do(func() {
			cut.Stop()
			if handshook != nil {
				handshook()
			}
		})
	}
	defer s.handshook()
	// Closing the connection unblocks every read and write when the
	// context ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.writer()
	}()
	start := time.Now()
	rep, err := s.run(ctx)
	if err != nil {
		s.sendFailure(err)
		s.closeSoon()
	}
	close(s.out)
	werr := <-s.writeErr
	wg.Wait()
	conn.Close()
	if werr != nil && (err == nil || errors.Is(err, dbsync.ErrNetwork) && !errors.Is(err, errNoCommit)) {
		// (A failed write closes the connection: the reads' error, if
		// any, is that one's. The wait for COMMIT closed it itself.)
		err = fmt.Errorf("%w: %w", dbsync.ErrNetwork, werr)
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		// The context's end closed the connection: say so (errors.Is).
		err = fmt.Errorf("%w: %w", cause, err)
	}
	if err != nil {
		c.Logger.WarnContext(ctx, "stream: session failed", slog.String("error", err.Error()))
		return nil, err
	}
	rep.Duration = time.Since(start)
	c.Logger.InfoContext(ctx, "stream: session done", slog.String("peer", rep.Peer.String()),
		slog.Int("received", rep.Received), slog.Int("sent", rep.Sent))
	return rep, nil
}

// writer writes queued frames in order, until the queue closes.
//
// Each write gets the idle timeout when the connection has deadlines: an
// end that stops reading (but keeps the connection open) must not block
// this one forever; the read deadline does not help once this end only
// writes.
func (s *session) writer() {
	dl, hasDeadline := s.conn.(interface{ SetWriteDeadline(time.Time) error })
	extend := func() {
		if hasDeadline {
			_ = dl.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
	}
	// Each piece written gets the idle timeout anew: a large frame
	// crossing a slow link steadily is not cut (before, it had to leave
	// whole within the timeout, and failed every session).
	w := bufio.NewWriterSize(progressWriter{w: s.conn, extend: extend}, 1<<16)
	var err error
	var seq uint64
	for f := range s.out {
		if err != nil {
			continue // drain
		}
		payload := f.payload
		if f.key != nil {
			// Sealed in queue order, which is write order.
			payload = append(payload, frameMAC(f.key, seq, f.typ, payload)...)
			seq++
		}
		if err = WriteFrame(w, f.typ, payload); err == nil && len(s.out) == 0 {
			err = w.Flush()
		}
		if err != nil {
			// No frame of this end reaches the other any more (its
			// COMMIT neither): end the session's reads too, which would
			// else wait for the other end's COMMIT up to ApplyTimeout.
			s.conn.Close()
		}
	}
	if err == nil {
		err = w.Flush()
	}
	s.writeErr <- err
}

// writePiece is the most the writer writes under one extension of the
// write deadline.
const writePiece = 64 << 10

// progressWriter writes to the connection a piece (writePiece) at a time,
// calling extend (the write deadline) before each.
type progressWriter struct {
	w      io.Writer
	extend func()
}

func (pw progressWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), writePiece)
		pw.extend()
		m, err := pw.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// progressReader reads the connection, setting its read deadline idle
// ahead before each read while idle > 0 (0: the deadline is the
// session's to set, or there is none): a frame arriving steadily,
// however slowly, is not cut; a wait of idle without a byte is. Only the
// goroutine reading the session's frames uses it.
type progressReader struct {
	conn io.Reader
	dl   interface{ SetReadDeadline(time.Time) error } // nil: no deadlines
	idle time.Duration
}

func (r *progressReader) Read(p []byte) (int, error) {
	if r.idle > 0 && r.dl != nil {
		_ = r.dl.SetReadDeadline(time.Now().Add(r.idle))
	}
	return r.conn.Read(p)
}

// closeSoon closes the connection after a moment, long enough for a
// failure frame to leave when the other end still reads.
func (s *session) closeSoon() {
	s.closeOnce.Do(func() {
		time.AfterFunc(200*time.Millisecond, func() { s.conn.Close() })
	})
}

func (s *session) send(typ byte, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.out <- outFrame{typ: typ, payload: payload, key: s.sendKey}
	return nil
}

// sendFailure tells the other end why the session ends: dbsync's own
// refusals as they are, never the text of a database or system error
// (what this side's log has).
func (s *session) sendFailure(err error) {
	msg, code := err.Error(), failureCode(err)
	switch {
	case errors.Is(err, ErrAuth):
		msg, code = "authentication failed", "" // say nothing more to an unknown party
	case code == "" && !errors.Is(err, ErrFrame):
		msg = "internal error (see the other node's log)"
		if ve := (*dbsync.ValueError)(nil); errors.As(err, &ve) {
			// A row of this node's own that dbsync cannot carry: say which.
			msg = ve.Error() + " (see the other node's log)"
		}
	}
	payload, _ := json.Marshal(failure{Message: msg, Code: code})
	select {
	case s.out <- outFrame{typ: frameError, payload: payload, key: s.sendKey}:
	default:
	}
}

// maxPreAuthFrame bounds a frame read before the other end authenticated:
// an unknown party makes this side hold no more.
const maxPreAuthFrame = 4 << 10

// next reads the next frame, with the idle timeout when possible, and
// checks its MAC once the other end has authenticated. An error frame from
// the other end becomes ErrRemote.
func (s *session) next() (byte, []byte, error) {
	wait := s.cfg.IdleTimeout
	if s.wait > 0 {
		wait = s.wait
	}
	s.in.idle = 0
	if s.wait >= 0 {
		// For the frame's first bytes, and anew for each later read of
		// it (progressReader).
		s.readDeadline(time.Now().Add(wait))
		s.in.idle = wait
	}
	limit := s.cfg.MaxFrame
	if s.recvKey == nil {
		// Before the other end authenticates: a hello, an auth or an
		// error frame, all small.
		limit = min(limit, maxPreAuthFrame)
	}
	typ, payload, err := ReadFrame(s.r, limit)
	if big := (*frameSizeError)(nil); errors.As(err, &big) && s.recvKey != nil {
		return 0, nil, s.frameTooLarge(big)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, nil, fmt.Errorf("%w: nothing received for %s", dbsync.ErrNetwork, wait)
		}
		if errors.Is(err, ErrFrame) {
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("%w: %w", dbsync.ErrNetwork, err)
	}
	if s.recvKey != nil {
		n := len(payload) - macSize
		if n < 0 || !hmac.Equal(payload[n:], frameMAC(s.recvKey, s.recvSeq, typ, payload[:n])) {
			return 0, nil, fmt.Errorf("%w: frame %d (%q) fails its MAC: altered, injected, dropped or replayed", ErrAuth, s.recvSeq, typ)
		}
		payload = payload[:n]
		s.recvSeq++
	}
	if typ == frameError {
		var f failure
		_ = json.Unmarshal(payload, &f)
		e := &remoteError{msg: f.Message}
		if s.recvKey != nil {
			// (Only an authenticated end's code is taken.)
			e.cause = remoteCause(f.Code)
		}
		return 0, nil, e
	}
	return typ, payload, nil
}

// limitError is a session's failure for a bound of this end passed: the
// frame (ErrFrame) and the bound (a *peer.LimitError, dbsync.ErrTooLarge,
// sent to the other end with its code).
type limitError struct{ *peer.LimitError }

func (e limitError) Error() string   { return "stream: " + e.LimitError.Error() }
func (e limitError) Unwrap() []error { return []error{ErrFrame, e.LimitError} }

// frameTooLarge is the error of a frame of the authenticated other end
// over Config.MaxFrame: a page, its first row named from its first bytes
// (read, at most 4 KiB; the rest is not, nor its MAC checked: the session
// ends). Another frame that large is only ErrFrame.
func (s *session) frameTooLarge(big *frameSizeError) error {
	head := make([]byte, min(int(big.size), 1+4<<10))
	if _, err := io.ReadFull(s.r, head); err != nil || head[0] != frameBatch {
		return big
	}
	return limitError{(&peer.LimitError{Limit: "stream.Config.MaxFrame", Max: int64(big.max), Size: int64(big.size)}).NameRow(head[1:])}
}

// readDeadline sets the connection's read deadline, when it has one (the
// zero time: none).
func (s *session) readDeadline(t time.Time) {
	if dl, ok := s.conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = dl.SetReadDeadline(t)
	}
}

// read reads the next frame, which must be of type want, into v.
func (s *session) read(want byte, v any) error {
	typ, payload, err := s.next()
	if err != nil {
		return err
	}
	if typ != want {
		return fmt.Errorf("%w: got frame %q, want %q", ErrFrame, typ, want)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return nil
}

// macSize is the length of a frame's MAC.
const macSize = sha256.Size

// frameMAC authenticates one frame: its sequence number in its direction,
// its type and its payload.
func frameMAC(key []byte, seq uint64, typ byte, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	var head [9]byte
	binary.BigEndian.PutUint64(head[:8], seq)
	head[8] = typ
	m.Write(head[:])
	m.Write(payload)
	return m.Sum(nil)
}

// frameKey derives the key of the frames from one end to the other in
// this session: bound to the secret, both fresh nonces and both nodes, in
// the direction's order, so each direction and each session has its own.
func (s *session) frameKey(fromNonce, toNonce, from, to string) []byte {
	m := hmac.New(sha256.New, s.cfg.Secret)
	fmt.Fprintf(m, "dbsync-stream-frames\n%s\n%s\n%s\n%s\n", fromNonce, toNonce, from, to)
	return m.Sum(nil)
}

func (s *session) mac(a, b, c, d string) string {
	m := hmac.New(sha256.New, s.cfg.Secret)
	fmt.Fprintf(m, "dbsync-stream-auth\n%s\n%s\n%s\n%s\n", a, b, c, d)
	return hex.EncodeToString(m.Sum(nil))
}

func (s *session) run(ctx context.Context) (*Report, error) {
	me := s.node.ID().String()
	mine := hello{Version: Version, Node: me, Nonce: protocol.NewNonce(), Schema: s.node.Schema()}
	if err := s.send(frameHello, mine); err != nil {
		return nil, err
	}
	var theirs hello
	if err := s.read(frameHello, &theirs); err != nil {
		return nil, err
	}
	if theirs.Version != Version {
		return nil, fmt.Errorf("%w: the other end speaks version %d", dbsync.ErrProtocolVersion, theirs.Version)
	}
	pid, err := uuid.Parse(theirs.Node)
	if err != nil || !protocol.ValidNonce(theirs.Nonce) {
		return nil, fmt.Errorf("%w: bad hello", ErrFrame)
	}
	if pid == s.node.ID() {
		return nil, fmt.Errorf("%w (%s)", peer.ErrSameNode, pid)
	}
	// Each end proves it holds the secret over both fresh nonces: a
	// recorded answer is worthless in another session. The end that
	// dialed proves first; Serve's end proves once it checked that proof.
	prove := func() error {
		if err := s.send(frameAuth, auth{MAC: s.mac(mine.Nonce, theirs.Nonce, me, theirs.Node)}); err != nil {
			return err
		}
		// Every later frame of this end is sealed (failures included).
		s.sendKey = s.frameKey(mine.Nonce, theirs.Nonce, me, theirs.Node)
		return nil
	}
	if !s.verifyFirst {
		if err := prove(); err != nil {
			return nil, err
		}
	}
	var a auth
	if err := s.read(frameAuth, &a); err != nil {
		return nil, err
	}
	s.recvKey = s.frameKey(theirs.Nonce, mine.Nonce, theirs.Node, me)
	want := s.mac(theirs.Nonce, mine.Nonce, theirs.Node, me)
	if !hmac.Equal([]byte(a.MAC), []byte(want)) {
		return nil, ErrAuth
	}
	if s.verifyFirst {
		if err := prove(); err != nil {
			return nil, err
		}
	}
	s.handshook()
	if s.admit != nil {
		if err := s.admit(); err != nil {
			return nil, err
		}
	}
	if theirs.Schema != mine.Schema {
		return nil, fmt.Errorf("%w: the two ends track different tables or columns", dbsync.ErrSchemaMismatch)
	}
	// Cursors: how far each end has applied the other's feed.
	have, err := s.node.Cursor(ctx, pid)
	if err != nil {
		return nil, err
	}
	if err := s.send(frameCursor, have); err != nil {
		return nil, err
	}
	var theirCursor cursor
	if err := s.read(frameCursor, &theirCursor); err != nil {
		return nil, err
	}
	if !theirCursor.Valid() {
		return nil, fmt.Errorf("%w: bad cursor", ErrFrame)
	}
	// Send our changes while we receive and apply theirs.
	xctx, xcancel := context.WithCancel(ctx)
	defer xcancel()
	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sendChanges(xctx, pid, theirCursor) }()
	// The pages are received whole before they are applied: the apply's
	// transaction holds the node's feed (and on SQLite the database's
	// write lock), which must never wait on the network.
	var received int
	next, release, err := s.receive()
	if err == nil {
		received, err = s.node.Apply(ctx, pid, next)
		release()
	}
	if err != nil {
		// Stop sending, tell the other end, and unblock a writer it no
		// longer reads from.
		xcancel()
		s.sendFailure(err)
		s.closeSoon()
		<-sendErr
		return nil, err
	}
	// The other end's COMMIT comes once it applied all this end's pages,
	// but its ERROR any time: one that refused them (a bound passed) and
	// stopped reading must not leave this end blocked on its writes until
	// the connection closes, with a network error that does not say why.
	// So the next frame is read while this end still sends, with no read
	// deadline (each write has its own); the wait for COMMIT, up to
	// ApplyTimeout, starts once this end's pages are all sent.
	type answer struct {
		c   commit
		err error
	}
	answered := make(chan answer, 1)
	s.wait = -1
	s.readDeadline(time.Time{})
	go func() {
		var a answer
		a.err = s.read(frameCommit, &a.c)
		if a.err == nil && a.c.Applied < 0 {
			// (Else the session succeeded with a Report that "sent" a
			// negative count.)
			a.err = fmt.Errorf("%w: COMMIT of %d versions applied", ErrFrame, a.c.Applied)
		}
		answered <- a
	}()
	var ans answer
	got := false
	select {
	case err = <-sendErr:
	case ans = <-answered:
		got = true
		if ans.err != nil {
			// The session is over: stop sending.
			xcancel()
			s.conn.Close()
			<-sendErr
			return nil, ans.err
		}
		err = <-sendErr // (a COMMIT: the pages were all sent)
	}
	if err != nil {
		s.sendFailure(err)
		s.closeSoon() // (which ends the read)
		if !got {
			<-answered
		}
		return nil, err
	}
	if err := s.send(frameCommit, commit{Applied: received}); err != nil {
		return nil, err
	}
	if !got {
		// The other end applies this end's pages before it answers: up
		// to ApplyTimeout, on any connection (a timer that closes it,
		// not a read deadline, which a connection without deadlines
		// ignored: the session then waited for ever).
		timer := time.NewTimer(s.cfg.ApplyTimeout)
		select {
		case ans = <-answered:
			timer.Stop()
		case <-timer.C:
			s.conn.Close() // (which ends the read)
			if ans = <-answered; ans.err != nil {
				return nil, fmt.Errorf("%w: %w (%s)", dbsync.ErrNetwork, errNoCommit, s.cfg.ApplyTimeout)
			}
		}
		if ans.err != nil {
			return nil, ans.err
		}
	}
	return &Report{Peer: pid, Received: received, Sent: ans.c.Applied}, nil
}

// receive reads the other end's pages, up to its DONE, into a spool
// (spool.Records: past 1 MiB, a temporary file) and returns an iterator
// over them and the function that discards the spool. Memory holds one
// frame and at most 1 MiB of spooled pages.
func (s *session) receive() (next func() (*peer.Batch, error), release func(), err error) {
	rec := spool.Records{Buffer: spool.Buffer{Dir: s.cfg.SpoolDir}}
	defer func() {
		if err != nil {
			rec.Discard()
		}
	}()
	var total int64
	for {
		typ, payload, err := s.next()
		if err != nil {
			return nil, nil, err
		}
		if typ == frameDone {
			// ({}: a DONE that is not JSON is as malformed as a page that
			// is not, and was taken.)
			if err := json.Unmarshal(payload, &struct{}{}); err != nil {
				return nil, nil, fmt.Errorf("%w: DONE: %w", ErrFrame, err)
			}
			break
		}
		if typ != frameBatch {
			return nil, nil, fmt.Errorf("%w: unexpected frame %q", ErrFrame, typ)
		}
		// Counted as spooled, with its length: frames of an empty payload
		// take room too (before, an endless stream of them never ended).
		if total += 4 + int64(len(payload)); total > s.cfg.MaxReceive {
			return nil, nil, limitError{(&peer.LimitError{Limit: "stream.Config.MaxReceive", Max: s.cfg.MaxReceive, Size: total}).NameRow(payload)}
		}
		if err := rec.Add(payload); err != nil {
			return nil, nil, fmt.Errorf("stream: %w", err)
		}
	}
	pages, err := rec.Iter()
	if err != nil {
		return nil, nil, fmt.Errorf("stream: %w", err)
	}
	return func() (*peer.Batch, error) {
		buf, err := pages()
		if errors.Is(err, io.EOF) {
			return nil, nil
		} else if err != nil {
			return nil, fmt.Errorf("stream: %w", err)
		}
		var b peer.Batch
		if err := json.Unmarshal(buf, &b); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFrame, err)
		}
		if !peer.ValidEpoch(b.Epoch) {
			// (It would become this end's cursor's epoch, and the other
			// end take it, sent back, for a restore of its own.)
			return nil, fmt.Errorf("%w: a page's epoch %q is not a UUID in canonical form", ErrFrame, b.Epoch)
		}
		return &b, nil
	}, rec.Discard, nil
}

// sendChanges streams this node's feed after the other end's cursor (the
// whole state when tombstones it lacks were purged: peer.Node.Feed, the
// sending half of peer.Node.Sync), then DONE.
func (s *session) sendChanges(ctx context.Context, pid uuid.UUID, from cursor) error {
	next, err := s.node.Feed(ctx, pid, from)
	if err != nil {
		return err
	}
	after := from.Seq
	for {
		b, err := next()
		if err != nil {
			return err
		}
		if b == nil {
			return s.send(frameDone, struct{}{})
		}
		// A page whose changes were all left out (the other end wrote
		// them) is still sent when it moves the position: the other end's
		// cursor then passes them, and the next session does not read
		// them again.
		if len(b.Changes) > 0 || b.Full || b.Last > after || b.Own {
			if err := s.send(frameBatch, b); err != nil {
				return err
			}
		}
		after = b.Last
	}
}

// Serve accepts connections on ln and runs a session on each, until ctx
// ends or ln fails.
// Sessions run concurrently, at most Config.MaxSessions once
// authenticated (beyond, the party gets a failure, "busy"); at most as
// many connections may be in their handshake (Config.HandshakeTimeout),
// and a new one beyond closes the oldest, so that parties that never
// authenticate cannot keep the mesh out. A failed session is logged and
// does not stop the others.
//
// Serve returns:
//   - ErrNoSecret without Config.Secret (or a nil cfg), and an error
//     naming Config.SpoolDir when that is set to anything but an existing
//     directory, at once, without accepting anything or closing ln;
//   - nil once ctx has ended: the end closes ln (which ends Accept) and
//     the sessions' connections, and Serve returns when every session
//     has returned. Stop a Serve by cancelling ctx;
//   - otherwise the first error of ln.Accept, as it is (closing ln
//     yourself gives an error wrapping net.ErrClosed; a temporary one, too
//     many open files, ends Serve as well), once the running sessions have
//     ended on their own.
//
// Serve closes ln only when ctx ends. A session's failure is never
// returned.
func Serve(ctx context.Context, ln net.Listener, node *peer.Node, cfg *Config) error {
	if cfg == nil {
		return ErrNoSecret
	}
	if err := cfg.check(); err != nil {
		return err // (rather than accept connections, each to fail)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	limit := 64
	if cfg != nil && cfg.MaxSessions > 0 {
		limit = cfg.MaxSessions
	}
	slots := make(chan struct{}, limit)
	var mu sync.Mutex
	var pending []net.Conn // in their handshake, oldest first
	forget := func(conn net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		if i := slices.Index(pending, conn); i >= 0 {
			pending = slices.Delete(pending, i, i+1)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		if len(pending) >= limit {
			pending[0].Close() // its session ends, and forgets it
			pending = pending[1:]
		}
		pending = append(pending, conn)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			admitted := false
			admit := func() error {
				select {
				case slots <- struct{}{}:
					admitted = true
					return nil
				default:
					return errBusy
				}
			}
			_, _ = syncConn(ctx, conn, node, cfg, admit, func() { forget(conn) })
			if admitted {
				<-slots
			}
		}()
	}
}

// errNoCommit ends a session whose other end did not answer COMMIT
// within Config.ApplyTimeout.
var errNoCommit = errors.New("no COMMIT within stream.Config.ApplyTimeout")

// errBusy ends a session Serve has no place for.
// It wraps dbsync.ErrBusy, which the other end's error wraps too.
var errBusy = fmt.Errorf("%w (stream: too many sessions, try again later)", dbsync.ErrBusy)

// Listen listens on the network address (as net.Listen does: "tcp",
// "127.0.0.1:9000") and serves sessions there as Serve does, until ctx
// ends. With tlsConfig set, the connections are TLS.
//
// Listen returns what Serve does: nil once ctx has ended (the listener
// closed and every session returned), ErrNoSecret or a Config.SpoolDir
// error at once, before it listens, or the listener's Accept error. It
// also fails at once, with an error wrapping net.Listen's, when it cannot
// listen on the address.
func Listen(ctx context.Context, network, address string, tlsConfig *tls.Config, node *peer.Node, cfg *Config) error {
	if cfg == nil {
		return ErrNoSecret
	}
	if err := cfg.check(); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	// Serve closes it when ctx ends, not when Accept fails.
	defer ln.Close()
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	return Serve(ctx, ln, node, cfg)
}
