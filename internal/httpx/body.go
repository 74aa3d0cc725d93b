// Package httpx holds what dbsync's HTTP handlers (package handlers for the
// server, package peer/peerhttp for peers) share: request bodies read
// within budgets before their request is authenticated, per-request
// deadlines, and error answers.
package httpx

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/spool"
)

// Reading a body before its request is authenticated. A body of at most
// SmallBody bytes (by its Content-Length) is read into memory; a larger
// one, or one of unknown length, is hashed while it is copied to a spool
// file through a buffer of SpoolBuffer bytes. Both count against the
// handler's budget of memory, a spooled body also against its budget of
// disk; a request that would exceed either is answered 503 busy at once,
// with Retry-After.
const (
	SmallBody   = 1 << 20
	SpoolBuffer = 64 << 10
	// RetryAfter is the Retry-After of a busy answer, in seconds.
	RetryAfter = 2
)

// Budget is a count of bytes shared by concurrent requests.
type Budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// take reserves n bytes; it reports false, reserving nothing, when they
// do not fit.
func (b *Budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// fits reports whether n more bytes fit now, taking nothing.
func (b *Budget) fits(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used+n <= b.max
}

func (b *Budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// Bodies reads the request bodies of one handler within its budgets.
type Bodies struct {
	// Mem and Disk are the budgets of memory and disk held by bodies not
	// yet authenticated.
	Mem, Disk *Budget
	// Authed is the budget of memory held by spooled bodies once
	// authenticated (Reserve, Bytes), until Release; nil: unbounded.
	Authed *Budget
	// SpoolDir is where large bodies are spooled ("": os.TempDir()).
	SpoolDir string
}

// Body is a request body read before authentication.
type Body struct {
	data []byte   // a small body
	file *os.File // a spooled body (data is nil)
	size int64
	// Sum is the body's SHA-256.
	Sum [sha256.Size]byte
	// mem, disk and authed are the bytes the body holds of the handler's
	// budgets.
	mem, disk, authed int64
	bs                *Bodies
}

// NoGetBody refuses a GET request that announces a body (a length other
// than 0, or chunked) with dbsync.ErrBadRequest: a GET has no body
// (docs/protocol.md), and one refused before anything waits for it or
// reads it costs a party without credentials nothing but the headers.
func NoGetBody(r *http.Request) error {
	if r.Method == http.MethodGet && r.ContentLength != 0 {
		return fmt.Errorf("%w: a GET request has no body", dbsync.ErrBadRequest)
	}
	return nil
}

// Read reads a request body of at most limit bytes within the budgets.
// Call Close on the result.
//
// A body whose Content-Length does not fit in what is left of its budget
// is refused before it is read; one that fits takes its memory (up to
// SmallBody) or disk as its bytes arrive, not as its Content-Length
// announces them: a party without credentials that announces a large body
// and sends it slowly holds what it sent, not the budget of every other
// request (it held the whole announced length). Once until (not zero)
// is past, the read fails with dbsync.ErrUnauthorized: the request's
// timestamp window has closed, and the request would be refused for it
// once read.
func (bs *Bodies) Read(w http.ResponseWriter, r *http.Request, limit int64, until time.Time) (*Body, error) {
	cl := r.ContentLength
	if cl > limit {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", dbsync.ErrTooLarge, cl, limit)
	}
	b := &Body{bs: bs}
	if !until.IsZero() {
		// A read waiting for bytes that do not come is cut when the
		// window closes, not only by the rate deadline: a body sent fast
		// and then stalled would hold what it sent for hours.
		if rb, ok := r.Body.(*rateBody); ok {
			rb.until = until
		} else {
			rc := http.NewResponseController(w)
			t := time.AfterFunc(time.Until(until), func() { _ = rc.SetReadDeadline(time.Now()) })
			defer t.Stop()
		}
	}
	var err error
	if cl >= 0 && cl <= SmallBody {
		err = b.readSmall(r, cl, until)
	} else {
		err = b.spool(w, r, limit, until)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// readSmall reads a body of cl bytes into memory, SpoolBuffer bytes at a
// time, into a buffer that doubles (up to cl) as they come, each growth
// taken from the memory budget first.
func (b *Body) readSmall(r *http.Request, cl int64, until time.Time) error {
	if !b.bs.Mem.fits(cl) {
		return busy("memory", b.bs.Mem)
	}
	for b.size < cl {
		n := min(cl-b.size, SpoolBuffer)
		if need := b.size + n; need > int64(cap(b.data)) {
			size := min(cl, max(need, 2*int64(cap(b.data))))
			if !b.bs.Mem.take(size - int64(cap(b.data))) {
				return busy("memory", b.bs.Mem)
			}
			b.mem += size - int64(cap(b.data))
			grown := make([]byte, b.size, size)
			copy(grown, b.data)
			b.data = grown
		}
		b.data = b.data[:b.size+n]
		if _, err := io.ReadFull(r.Body, b.data[b.size:]); err != nil {
			if werr := windowClosed(until); werr != nil {
				return werr
			}
			return ReadError(err)
		}
		b.size += n
		if err := windowClosed(until); err != nil {
			return err
		}
	}
	if b.data == nil {
		b.data = []byte{}
	}
	b.Sum = sha256.Sum256(b.data)
	return nil
}

// windowClosed fails once until (not zero) is past.
func windowClosed(until time.Time) error {
	if !until.IsZero() && time.Now().After(until) {
		return fmt.Errorf("%w: the body was still arriving when the request's timestamp window closed", dbsync.ErrUnauthorized)
	}
	return nil
}

// spool copies the body to a spool file, hashing it.
func (b *Body) spool(w http.ResponseWriter, r *http.Request, limit int64, until time.Time) error {
	if !b.bs.Mem.take(SpoolBuffer) {
		return busy("memory", b.bs.Mem)
	}
	b.mem = SpoolBuffer
	if r.ContentLength > 0 && !b.bs.Disk.fits(r.ContentLength) {
		return busy("disk", b.bs.Disk)
	}
	f, err := spool.Create(b.bs.SpoolDir, "dbsync-body-*")
	if err != nil {
		return fmt.Errorf("handlers: spool file: %w", err)
	}
	b.file = f
	in := http.MaxBytesReader(w, r.Body, limit)
	sum := sha256.New()
	buf := make([]byte, SpoolBuffer)
	for {
		k, rerr := in.Read(buf)
		if k > 0 {
			b.size += int64(k)
			if more := b.size - b.disk; more > 0 {
				if !b.bs.Disk.take(more) {
					return busy("disk", b.bs.Disk)
				}
				b.disk += more
			}
			sum.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return fmt.Errorf("handlers: spool: %w", err)
			}
		}
		if err := windowClosed(until); err != nil {
			return err
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			var tooBig *http.MaxBytesError
			if errors.As(rerr, &tooBig) {
				return fmt.Errorf("%w: body exceeds %d bytes", dbsync.ErrTooLarge, limit)
			}
			if err := windowClosed(until); err != nil {
				return err
			}
			return ReadError(rerr)
		}
	}
	sum.Sum(b.Sum[:0])
	return nil
}

// Reserve takes from the Authed budget the memory a spooled body will
// take in Bytes, held until Release; a small body (in memory already)
// takes nothing. It fails with dbsync.ErrBusy when the budget is in use.
func (b *Body) Reserve() error {
	a := b.bs.Authed
	if a == nil || b.file == nil || b.authed > 0 {
		return nil
	}
	if !a.take(b.size) {
		return fmt.Errorf("%w: the memory budget for authenticated request bodies (%d bytes) is in use; retry later",
			dbsync.ErrBusy, a.max)
	}
	b.authed = b.size
	return nil
}

// Bytes returns the whole body, reading a spooled one into memory (once
// its request is authenticated, within what Reserve took).
func (b *Body) Bytes() ([]byte, error) {
	if b.file == nil {
		return b.data, nil
	}
	if err := b.Reserve(); err != nil {
		return nil, err
	}
	data := make([]byte, b.size)
	if _, err := b.file.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("handlers: reading spooled body: %w", err)
	}
	return data, nil
}

// Len returns the body's length in bytes.
func (b *Body) Len() int64 { return b.size }

// Reader returns the body from its start, from memory or from its spool
// file: unlike Bytes, it does not read a spooled body into memory. It is
// valid until Close.
func (b *Body) Reader() io.Reader {
	if b.file == nil {
		return bytes.NewReader(b.data)
	}
	return io.NewSectionReader(b.file, 0, b.size)
}

// Authenticated gives back what the body holds of the budgets for
// unauthenticated bodies, keeping its data or spool file for Reader until
// Close: a handler that reads an authenticated body from its file, for
// as long as its request takes, calls it once the request is
// authenticated, so that other requests' bodies are not refused busy
// meanwhile.
func (b *Body) Authenticated() {
	b.bs.Mem.give(b.mem)
	b.bs.Disk.give(b.disk)
	b.mem, b.disk = 0, 0
}

// Close removes the spool file and gives the budgets back.
func (b *Body) Close() {
	if b.file != nil {
		spool.Discard(b.file)
		b.file = nil
	}
	b.bs.Mem.give(b.mem)
	b.bs.Disk.give(b.disk)
	b.mem, b.disk = 0, 0
}

// Release gives back what Bytes took of the Authed budget: call it once
// the body's bytes are no longer used (the request is answered).
func (b *Body) Release() {
	if b.authed > 0 {
		b.bs.Authed.give(b.authed)
		b.authed = 0
	}
}

func busy(what string, b *Budget) error {
	return fmt.Errorf("%w: the %s budget for unauthenticated request bodies (%d bytes) is in use; retry later", dbsync.ErrBusy, what, b.max)
}

// ReadError describes a failure to read a request body: a body cut by the
// read deadline (too slow, see Deadlines) is a timeout; anything else a
// bad request.
func ReadError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: the body arrived too slowly", dbsync.ErrTimeout)
	}
	return fmt.Errorf("%w: reading body: %w", dbsync.ErrBadRequest, err)
}
