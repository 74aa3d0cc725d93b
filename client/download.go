package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpclient"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/protocol"
)

// maxInMemory bounds an answer download keeps in memory; a bigger one
// goes to a temporary file (Config.SpoolDir).
const maxInMemory = 1 << 20

// streamAfter is the size past which a pull's answer goes to a file and
// is applied while it downloads (downloadApply): below it, the answer is
// in memory and applied once downloaded.
const streamAfter = 256 << 10

// defaultMaxDownload is Config.MaxDownloadBytes's default.
const defaultMaxDownload = 64 << 30

// defaultStallTimeout is Config.StallTimeout's default.
const defaultStallTimeout = 60 * time.Second

// downloaded is a downloaded answer: in memory when it is small, else in
// a temporary file. It can be read again after a Seek to the start (a
// reset reads it twice). Discard it after use.
type downloaded struct {
	io.ReadSeeker
	buf *spool.Buffer
}

func (d *downloaded) discard() { d.buf.Discard() }

// download reads a streamed answer (a repair's or a reset's; a pull's
// through downloadApply) whole, reporting progress, and closes it: into
// memory up to maxInMemory, then on into a temporary file, so memory
// stays bounded and the transaction applying it does not wait on the
// network.
func (c *Client) download(ctx context.Context, stream io.ReadCloser, op string) (*downloaded, int64, error) {
	return c.downloadNotifying(ctx, stream, op, nil, maxInMemory, nil)
}

// downloadNotifying is download, keeping at most inMemory bytes in
// memory; once the answer goes to a file, it tells g (when not nil) after
// each write, and of a failure before the file goes. Once stop (when not
// nil) is closed, it gives up with errDownloadStopped. A line longer than
// the bound the apply reads (lineBound) fails the download at once: a
// repair or reset, and a pull applied once downloaded, read no line
// before the whole answer is in, and one that never ends would fill the
// disk. For the same reason an answer longer than
// Config.MaxDownloadBytes fails the download (dbsync.ErrTooLarge): one
// applied as it downloads is spooled whole too.
func (c *Client) downloadNotifying(ctx context.Context, stream io.ReadCloser, op string, g *growing, inMemory int, stop <-chan struct{}) (*downloaded, int64, error) {
	defer stream.Close()
	// A read that waits longer than Config.StallTimeout closes the
	// stream, which ends the read (Transport's contract).
	guarded := answerGuard(stream, func() { _ = stream.Close() }, c.stallTimeout(), c.answerTimeout())
	lines := lineBound{max: c.lineMax()}
	maxBytes := c.maxDownload()
	buf := &spool.Buffer{Dir: c.cfg.SpoolDir, Memory: inMemory, Pattern: "dbsync-" + op + "-*.ndjson"}
	fail := func(err error) (*downloaded, int64, error) {
		if g != nil {
			g.finish(err)
		}
		buf.Discard()
		return nil, 0, err
	}
	chunk := make([]byte, 1<<16)
	var n int64
	last := time.Now()
	for {
		select {
		case <-stop:
			return fail(errDownloadStopped)
		default:
		}
		k, rerr := guarded.Read(chunk)
		if k > 0 {
			if err := lines.add(chunk[:k]); err != nil {
				return fail(err)
			}
			if n+int64(k) > maxBytes {
				return fail(fmt.Errorf("%w: the %s answer exceeds %d bytes (client.Config.MaxDownloadBytes: raise it to take a larger one)",
					dbsync.ErrTooLarge, op, maxBytes))
			}
			if _, err := buf.Write(chunk[:k]); err != nil {
				return fail(fmt.Errorf("client: %w", err))
			}
			n += int64(k)
			if g != nil {
				f, err := buf.Flush()
				if err != nil {
					return fail(fmt.Errorf("client: %w", err))
				}
				if f != nil {
					g.grow(f, n)
				}
			}
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			select {
			case <-stop: // the stream closed under the read (downloadApply)
				return fail(errDownloadStopped)
			default:
			}
			if ctx.Err() != nil {
				return fail(fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err()))
			}
			return fail(fmt.Errorf("%w: download cut short after %d bytes: %w", dbsync.ErrNetwork, n, rerr))
		}
	}
	c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
	r, err := buf.Reader()
	if err != nil {
		return fail(fmt.Errorf("client: %w", err))
	}
	return &downloaded{ReadSeeker: r, buf: buf}, n, nil
}

// maxPullWait is how long a pull's transaction may wait on the network
// beyond the time it has worked, once it keeps the node's writers out
// (downloadApply).
const maxPullWait = 250 * time.Millisecond

// errDownloadStopped ends the download of an answer whose apply failed
// while it downloaded: the rest of it would be read for nothing, and a
// hostile server's answer may never end.
var errDownloadStopped = errors.New("the apply failed: download stopped")

// errWaitedLong stops the apply of an answer still downloading when it
// waited on the network longer than maxPullWait allows.
var errWaitedLong = errors.New("the answer comes slower than it is applied")

// answer is what downloadApply gives its apply: the answer to read, the
// number of its bytes received so far, and hold, which the apply calls
// once its transaction keeps the node's writers out (a SQLite
// transaction from its start, a PostgreSQL one once it holds the merge
// lock: lockForMerge). Its waits on the network are bounded from then on.
type answer struct {
	io.Reader
	received func() int64
	hold     func()
}

// downloadApply downloads an answer (download) and applies it (apply, in
// its transaction). A small answer is applied once downloaded. A larger
// one (over streamAfter), spooled to a file, is applied while it
// downloads, reading the file as it grows: once the transaction keeps
// the node's writers out (answer.hold), it waits on the network at most
// as long as it has worked since, plus maxPullWait in all. What came
// before (the wait for the writers to finish, the merge lock's) counts
// neither as work nor as a wait: the application's writers, once kept
// out, never wait on the network for longer than the apply works.
// Past that bound (the network is slower than the apply) the
// transaction rolls back, and the answer is applied again once
// downloaded, as a small one: the transaction never holds the local
// database for much longer than its own work. downloadApply returns the
// answer's size.
func (c *Client) downloadApply(ctx context.Context, stream io.ReadCloser, op string, apply func(*answer) error) (int64, error) {
	type outcome struct {
		answer *downloaded
		size   int64
		err    error
	}
	g := &growing{more: make(chan struct{}, 1), spooled: make(chan struct{})}
	finished := make(chan outcome, 1)
	stop := make(chan struct{})
	go func() {
		d, n, err := c.downloadNotifying(ctx, stream, op, g, streamAfter, stop)
		g.finish(err)
		finished <- outcome{d, n, err}
	}()
	var out outcome
	select {
	case out = <-finished:
	case <-g.spooled:
		r := &growingReader{ctx: ctx, g: g}
		err := apply(&answer{Reader: r, received: g.received, hold: r.hold})
		if err == nil || !errors.Is(err, errWaitedLong) {
			if err != nil {
				// The download may wait on a server that stopped
				// sending: closing the stream ends its read.
				close(stop)
				_ = stream.Close()
			}
			out = <-finished // the download ends with the stream, or stops
			if out.answer != nil {
				out.answer.discard()
			}
			switch {
			case err == nil: // applied: whatever came after the end line
				return out.size, nil
			case out.err != nil && !errors.Is(out.err, errDownloadStopped): // the download failed: the cause
				return 0, out.err
			}
			return 0, err
		}
		c.log.InfoContext(ctx, "client: the answer downloads slower than it applies; applying it once downloaded",
			slog.String("op", op))
		out = <-finished
	}
	if out.err != nil {
		return 0, out.err
	}
	defer out.answer.discard()
	return out.size, apply(&answer{Reader: out.answer, received: func() int64 { return out.size }, hold: func() {}})
}

// growing is a spool file a download writes and an apply reads meanwhile.
type growing struct {
	mu      sync.Mutex
	f       *os.File
	n       int64 // bytes written to f
	done    bool
	err     error         // the download's, once done
	more    chan struct{} // a signal that n or done changed
	spooled chan struct{} // closed at the first write to f
}

func (g *growing) grow(f *os.File, n int64) {
	g.mu.Lock()
	first := g.f == nil
	g.f, g.n = f, n
	g.mu.Unlock()
	if first {
		close(g.spooled)
	}
	g.signal()
}

func (g *growing) received() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// finish records the end of the download (the first call counts).
func (g *growing) finish(err error) {
	g.mu.Lock()
	if !g.done {
		g.done, g.err = true, err
	}
	g.mu.Unlock()
	g.signal()
}

func (g *growing) signal() {
	select {
	case g.more <- struct{}{}:
	default:
	}
}

// growingReader reads a growing file from its start, waiting for the
// download when it catches up with it, within downloadApply's bound once
// hold is called (before, its waits are not bounded: the transaction
// keeps no writer out). Read and hold may run on two goroutines (the
// apply reads ahead: messages.readAhead).
type growingReader struct {
	ctx context.Context
	g   *growing
	off int64

	mu     sync.Mutex
	held   time.Time     // since when the apply keeps the writers out (zero: not yet)
	waited time.Duration // on the download, since held
}

// hold starts the bound on the waits: the apply's transaction keeps the
// node's writers out from now on.
func (r *growingReader) hold() {
	r.mu.Lock()
	r.held, r.waited = time.Now(), 0
	r.mu.Unlock()
	r.g.signal() // a wait under way is bounded from now
}

func (r *growingReader) Read(p []byte) (int, error) {
	for {
		r.g.mu.Lock()
		f, n, done, err := r.g.f, r.g.n, r.g.done, r.g.err
		r.g.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if avail := n - r.off; avail > 0 {
			k, rerr := f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
			r.off += int64(k)
			if k > 0 && rerr == io.EOF {
				rerr = nil
			}
			return k, rerr
		}
		if done {
			return 0, io.EOF
		}
		r.mu.Lock()
		held, waited := r.held, r.waited
		r.mu.Unlock()
		var t *time.Timer
		var timeout <-chan time.Time // nil before hold: no bound
		if !held.IsZero() {
			// Waited at most as long as worked since held, plus
			// maxPullWait.
			left := maxPullWait + time.Since(held) - 2*waited
			if left <= 0 {
				return 0, errWaitedLong
			}
			t = time.NewTimer(left)
			timeout = t.C
		}
		t0 := time.Now()
		select {
		case <-r.g.more:
		case <-timeout:
		case <-r.ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		r.mu.Lock()
		if !r.held.IsZero() {
			if t0.Before(r.held) { // hold came during the wait
				t0 = r.held
			}
			r.waited += time.Since(t0)
		}
		r.mu.Unlock()
	}
}

// messages decodes the lines of a spooled stream one at a time. The first
// must be a header; a stream without its end line is an error.
type messages struct {
	r       *bufio.Reader
	maxLine int             // protocol.MaxLineBytes, unless a test set less
	ahead   chan parsedLine // with readAhead: the lines, parsed ahead
}

type parsedLine struct {
	msg  *protocol.Message
	prep any // prepare's result
	err  error
}

// readAhead reads and parses the next line on another goroutine while the
// caller handles the last one (a line at most is held ahead), and runs
// prepare (when not nil) on it there: nextPrepared returns its result.
// The caller must call the returned stop before it stops reading, and
// before the stream is closed.
func (m *messages) readAhead(prepare func(*protocol.Message) (any, error)) (stop func()) {
	ahead := make(chan parsedLine, 1)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		defer close(ahead)
		for {
			msg, err := m.read()
			var prep any
			if err == nil && prepare != nil {
				prep, err = prepare(msg)
			}
			select {
			case ahead <- parsedLine{msg, prep, err}:
			case <-done:
				return
			}
			if err != nil || msg.Type == protocol.MsgEnd {
				return
			}
		}
	}()
	m.ahead = ahead
	return func() {
		close(done)
		<-finished
	}
}

func (c *Client) newMessages(r io.Reader) *messages {
	return &messages{r: bufio.NewReaderSize(r, 1<<16), maxLine: c.lineMax()}
}

// lineMax is the longest line of a pull or repair answer the client reads.
func (c *Client) lineMax() int {
	if c.maxLine > 0 {
		return c.maxLine
	}
	return protocol.MaxLineBytes
}

// stallTimeout is the longest a read of a streamed answer waits for its
// next bytes (Config.StallTimeout; 0: no bound).
func (c *Client) stallTimeout() time.Duration {
	switch d := c.cfg.StallTimeout; {
	case d < 0:
		return 0
	case d == 0:
		return defaultStallTimeout
	default:
		return d
	}
}

// answerTimeout is the longest the client reads one answer
// (Config.AnswerTimeout; 0: no bound).
func (c *Client) answerTimeout() time.Duration {
	return max(c.cfg.AnswerTimeout, 0)
}

// answerGuard bounds the reads of an answer (a stream, or a JSON
// answer's body) by Config.StallTimeout (stall) each and by
// Config.AnswerTimeout (total) together, from now; cut must end a read.
func answerGuard(rc io.ReadCloser, cut func(), stall, total time.Duration) *stallGuard {
	g := &stallGuard{ReadCloser: rc, cut: cut, next: stall, nextName: "client.Config.StallTimeout"}
	if total > 0 {
		g.deadline, g.deadlineName, g.total = time.Now().Add(total), "client.Config.AnswerTimeout", total
	}
	return g
}

// stallGuard bounds each read of an answer: a read that waits longer than
// next for bytes (than first, when not zero, before the answer's first
// bytes) calls cut, which must end the read (close the stream, or end its
// request), and fails with an error naming the bound. A zero bound is
// none. Only the reads count: the time between them (an apply waiting
// for the client's lock, or working) does not. With a deadline, no read
// goes past it either, however steadily the bytes come (a server
// trickling a byte every next − ε): the answer as a whole is bounded.
type stallGuard struct {
	io.ReadCloser
	cut                 func()
	first, next         time.Duration
	firstName, nextName string        // the settings, for the error
	deadline            time.Time     // zero: none
	total               time.Duration // the bound deadline comes from
	deadlineName        string
	started             bool // the first bytes came
	timer               *time.Timer
	fired               atomic.Bool // cut was called: the stream is done
}

func (g *stallGuard) Read(p []byte) (int, error) {
	d, name := g.next, g.nextName
	if !g.started && g.first > 0 {
		d, name = g.first, g.firstName
	}
	overall := false
	if !g.deadline.IsZero() {
		if left := time.Until(g.deadline); d <= 0 || left < d {
			d, overall = max(left, time.Nanosecond), true
		}
	}
	if d <= 0 {
		n, err := g.ReadCloser.Read(p)
		g.started = g.started || n > 0
		return n, err
	}
	if g.timer == nil {
		g.timer = time.AfterFunc(d, func() { g.fired.Store(true); g.cut() })
	} else {
		g.timer.Reset(d)
	}
	n, err := g.ReadCloser.Read(p)
	g.timer.Stop()
	g.started = g.started || n > 0
	if err != nil && err != io.EOF && g.fired.Load() {
		if overall {
			err = fmt.Errorf("the answer took longer than %s (%s): %w", g.total, g.deadlineName, err)
		} else {
			err = fmt.Errorf("no bytes of the answer came for %s (%s): %w", d, name, err)
		}
	}
	return n, err
}

// maxDownload is the most bytes of one answer the client downloads
// (Config.MaxDownloadBytes).
func (c *Client) maxDownload() int64 {
	if c.cfg.MaxDownloadBytes > 0 {
		return c.cfg.MaxDownloadBytes
	}
	return defaultMaxDownload
}

// lineBound follows the lines of an answer as it downloads, newlines not
// counted, and refuses one longer than max as messages.readLine does.
type lineBound struct {
	max  int
	open int // bytes of the line not ended yet
}

func (l *lineBound) add(b []byte) error {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.open += len(b)
			break
		}
		if l.open+i > l.max {
			l.open += i
			break
		}
		l.open, b = 0, b[i+1:]
	}
	if l.open > l.max {
		return errLineTooLong(l.max)
	}
	return nil
}

func errLineTooLong(max int) error {
	return fmt.Errorf("%w: a line of the stream exceeds %d bytes (protocol.MaxLineBytes)", dbsync.ErrBadResponse, max)
}

// header reads the first line of op's stream, which must be a header
// naming the server's newest version.
func (m *messages) header(op string) (*protocol.Message, error) {
	head, err := m.next()
	if err != nil {
		return nil, err
	}
	if head.Type != protocol.MsgHeader || head.LatestVersionID == nil {
		return nil, fmt.Errorf("%w: %s stream does not start with a header", dbsync.ErrBadResponse, op)
	}
	return head, nil
}

// next reads the next line. An error line becomes the error it reports.
func (m *messages) next() (*protocol.Message, error) {
	msg, _, err := m.nextPrepared()
	return msg, err
}

// nextPrepared is next, with what readAhead's prepare made of the line.
func (m *messages) nextPrepared() (*protocol.Message, any, error) {
	if m.ahead != nil {
		l, ok := <-m.ahead
		if !ok {
			return nil, nil, fmt.Errorf("%w: read past the end line", dbsync.ErrBadResponse)
		}
		return l.msg, l.prep, l.err
	}
	msg, err := m.read()
	return msg, nil, err
}

// read reads and parses the next line.
func (m *messages) read() (*protocol.Message, error) {
	var line []byte
	for len(bytes.TrimSpace(line)) == 0 {
		var err error
		line, err = m.readLine()
		if err == io.EOF {
			if len(bytes.TrimSpace(line)) == 0 {
				return nil, fmt.Errorf("%w: the stream ended without its end line", dbsync.ErrNetwork)
			}
			// A last line without its newline: the stream was cut.
			return nil, fmt.Errorf("%w: the stream was cut inside a line", dbsync.ErrNetwork)
		}
		if errors.Is(err, dbsync.ErrBadResponse) { // too long
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading the stream: %w", dbsync.ErrNetwork, err)
		}
	}
	msg, err := protocol.ParseMessage(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	if msg.Type == protocol.MsgError {
		if msg.Error == nil {
			return nil, fmt.Errorf("%w: error line without an error", dbsync.ErrBadResponse)
		}
		return nil, httpclient.DetailError(http.StatusOK, *msg.Error)
	}
	return msg, nil
}

// readLine reads up to and including the next newline, as ReadBytes does,
// but refuses a line longer than m.maxLine: read whole, a line that never
// ends (a hostile or broken server) would take all the memory there is.
func (m *messages) readLine() ([]byte, error) {
	var line []byte
	for {
		part, err := m.r.ReadSlice('\n')
		n := len(line) + len(part)
		if err == nil {
			n-- // the newline
		}
		if n > m.maxLine {
			return nil, errLineTooLong(m.maxLine)
		}
		line = append(line, part...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}
