package handlers

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/server"
)

// Reading a body before its request is authenticated. A body of at most
// smallBody bytes (by its Content-Length) is read into memory; a larger
// one, or one of unknown length, is hashed while it is copied to a spool
// file through a buffer of spoolBuffer bytes. Both count against the
// handler's budget of memory (Config.PreauthMemory), a spooled body also
// against its budget of disk (Config.PreauthDisk); a request that would
// exceed either is answered 503 busy at once, with Retry-After.
const (
	smallBody   = 1 << 20
	spoolBuffer = 64 << 10
	// retryAfter is the Retry-After of a busy answer, in seconds.
	retryAfter = 2
)

// budget is a count of bytes shared by concurrent requests.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// take reserves n bytes; it reports false, reserving nothing, when they
// do not fit.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// body is a request body read before authentication.
type body struct {
	data []byte   // a small body
	file *os.File // a spooled body (data is nil)
	size int64
	sum  [sha256.Size]byte
	// mem and disk are the bytes the body holds of the handler's budgets.
	mem, disk int64
	h         *handler
}

// readBody reads a request body of at most limit bytes within the
// handler's budgets. Call close on the result.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*body, error) {
	cl := r.ContentLength
	if cl > limit {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", dbsync.ErrTooLarge, cl, limit)
	}
	b := &body{h: h}
	if cl >= 0 && cl <= smallBody {
		if !h.mem.take(cl) {
			return nil, busy("memory", h.mem)
		}
		b.mem = cl
		b.data = make([]byte, cl)
		if _, err := io.ReadFull(r.Body, b.data); err != nil {
			b.close()
			return nil, readError(err)
		}
		b.size = cl
		b.sum = sha256.Sum256(b.data)
		return b, nil
	}
	if !h.mem.take(spoolBuffer) {
		return nil, busy("memory", h.mem)
	}
	b.mem = spoolBuffer
	if cl > 0 {
		if !h.disk.take(cl) {
			b.close()
			return nil, busy("disk", h.disk)
		}
		b.disk = cl
	}
	if err := b.spool(w, r, limit); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// spool copies the body to a spool file, hashing it.
func (b *body) spool(w http.ResponseWriter, r *http.Request, limit int64) error {
	f, err := spool.Create(b.h.cfg.SpoolDir, "dbsync-body-*")
	if err != nil {
		return fmt.Errorf("handlers: spool file: %w", err)
	}
	b.file = f
	in := http.MaxBytesReader(w, r.Body, limit)
	sum := sha256.New()
	buf := make([]byte, spoolBuffer)
	for {
		k, rerr := in.Read(buf)
		if k > 0 {
			b.size += int64(k)
			if more := b.size - b.disk; more > 0 {
				// A body of unknown length takes its disk as it comes.
				if !b.h.disk.take(more) {
					return busy("disk", b.h.disk)
				}
				b.disk += more
			}
			sum.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return fmt.Errorf("handlers: spool: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			var tooBig *http.MaxBytesError
			if errors.As(rerr, &tooBig) {
				return fmt.Errorf("%w: body exceeds %d bytes", dbsync.ErrTooLarge, limit)
			}
			return readError(rerr)
		}
	}
	sum.Sum(b.sum[:0])
	return nil
}

// bytes returns the whole body, reading a spooled one into memory (once
// its request is authenticated).
func (b *body) bytes() ([]byte, error) {
	if b.file == nil {
		return b.data, nil
	}
	data := make([]byte, b.size)
	if _, err := b.file.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("handlers: reading spooled body: %w", err)
	}
	return data, nil
}

// close removes the spool file and gives the budgets back.
func (b *body) close() {
	if b.file != nil {
		spool.Discard(b.file)
		b.file = nil
	}
	b.h.mem.give(b.mem)
	b.h.disk.give(b.disk)
	b.mem, b.disk = 0, 0
}

func busy(what string, b *budget) error {
	return fmt.Errorf("%w: the %s budget for unauthenticated request bodies (%d bytes) is in use; retry later", dbsync.ErrBusy, what, b.max)
}

// prepare checks the protocol version and schema and, unless open, the
// signature headers (server.Precheck: node, timestamp, nonce) before it
// reads the body within limit (readBody), then verifies the signature over
// it. It returns the body and the node id.
func (h *handler) prepare(w http.ResponseWriter, r *http.Request, endpoint string, limit int64, open bool) ([]byte, int64, error) {
	if v := r.Header.Get(dbsync.HeaderProtocol); v != strconv.Itoa(dbsync.ProtocolVersion) {
		return nil, 0, fmt.Errorf("%w: got %q, this server speaks %d", dbsync.ErrProtocolVersion, v, dbsync.ProtocolVersion)
	}
	if err := h.srv.CheckSchema(r.Header.Get(dbsync.HeaderSchema)); err != nil {
		return nil, 0, err
	}
	var signed *dbsync.Signed
	var sig string
	var pre *server.Prechecked
	if !open {
		var err error
		if signed, sig, err = signedFrom(r, endpoint); err != nil {
			return nil, 0, err
		}
		if pre, err = h.srv.Precheck(r.Context(), signed); err != nil {
			return nil, 0, err
		}
	}
	b, err := h.readBody(w, r, limit)
	if err != nil {
		return nil, 0, err
	}
	defer b.close()
	var node int64
	if !open {
		signed.BodyHash = &b.sum
		if node, err = pre.Verify(r.Context(), sig); err != nil {
			return nil, 0, err
		}
	}
	data, err := b.bytes()
	return data, node, err
}

// signedFrom reads the signature headers of a request; the body is not
// read (Signed.Body and BodyHash are left empty).
func signedFrom(r *http.Request, endpoint string) (*dbsync.Signed, string, error) {
	nodeText, tsText := r.Header.Get(dbsync.HeaderNode), r.Header.Get(dbsync.HeaderTimestamp)
	nonce, sig := r.Header.Get(dbsync.HeaderNonce), r.Header.Get(dbsync.HeaderSignature)
	if nodeText == "" || tsText == "" || nonce == "" || sig == "" {
		return nil, "", fmt.Errorf("%w: request is not signed (missing %s, %s, %s or %s)", dbsync.ErrUnauthorized,
			dbsync.HeaderNode, dbsync.HeaderTimestamp, dbsync.HeaderNonce, dbsync.HeaderSignature)
	}
	node, err1 := strconv.ParseInt(nodeText, 10, 64)
	ts, err2 := strconv.ParseInt(tsText, 10, 64)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("%w: malformed %s or %s", dbsync.ErrUnauthorized, dbsync.HeaderNode, dbsync.HeaderTimestamp)
	}
	if len(sig) != 2*sha256.Size {
		return nil, "", fmt.Errorf("%w: malformed %s", dbsync.ErrUnauthorized, dbsync.HeaderSignature)
	}
	return &dbsync.Signed{
		Endpoint:  endpoint,
		Query:     r.URL.Query().Encode(),
		NodeID:    node,
		Timestamp: ts,
		Nonce:     nonce,
	}, sig, nil
}

// readError describes a failure to read a request body: a body cut by the
// read deadline (too slow, see Deadlines) is a timeout; anything else a
// bad request.
func readError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: the body arrived too slowly", dbsync.ErrTimeout)
	}
	return fmt.Errorf("%w: reading body: %w", dbsync.ErrBadRequest, err)
}
