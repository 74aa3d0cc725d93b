package peerhttp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/spool"
)

// An apply body larger than the serving node's Config.MaxBodyBytes (which
// it announces in its hello) is sent in parts: POST /apply requests with
// the query upload (a UUID the sender draws for the body), offset (the
// part's first byte in the body) and more=true on every part but the
// last. Each part is a request of its own, signed over its bytes and its
// query. The serving node stages the parts (spool.Buffer: a file past
// 1 MiB) and applies the whole body with the last, in one transaction, as
// it applies a body sent whole: the parts change how the body travels,
// not how it is applied, so nothing of an apply is committed before its
// last part arrives. The hello tells a peer what the node holds of its
// body (Staged): a transfer cut between parts resumes where it stopped
// when the sender's body starts with those bytes.

// part is the query of a POST /apply carrying a part of a body.
type part struct {
	upload uuid.UUID
	offset int64
	more   bool
}

// query returns the part's query.
func (pt part) query() url.Values {
	q := url.Values{"upload": {pt.upload.String()}, "offset": {strconv.FormatInt(pt.offset, 10)}}
	if pt.more {
		q.Set("more", "true")
	}
	return q
}

// parsePart reads the part a POST /apply carries, nil for a body sent
// whole (no upload). A malformed value is a dbsync.ErrBadRequest.
func parsePart(q url.Values) (*part, error) {
	if !q.Has("upload") {
		if q.Has("offset") || q.Has("more") {
			return nil, fmt.Errorf("%w: offset and more go with upload", dbsync.ErrBadRequest)
		}
		return nil, nil
	}
	id, err := uuid.Parse(q.Get("upload"))
	if err != nil || id.String() != q.Get("upload") {
		return nil, fmt.Errorf("%w: upload must be a UUID in canonical form", dbsync.ErrBadRequest)
	}
	off, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err != nil || off < 0 {
		return nil, fmt.Errorf("%w: offset must be a non-negative integer", dbsync.ErrBadRequest)
	}
	more, err := parseFlag(q, "more")
	if err != nil {
		return nil, err
	}
	return &part{upload: id, offset: off, more: more}, nil
}

// stages holds the parts received of bodies sent in parts, one body per
// peer: a first part (offset 0) drops the peer's earlier one, and a body
// leaves with its last part (applied, then discard), with a part that
// does not follow the bytes received, or ttl after its latest part, when
// any part of any peer arrives (dropped: a peer that does not come back).
// The bytes staged, summed over the peers (parts being written and bodies
// being applied included), stay within max (Config.MaxStagedBytes).
type stages struct {
	dir  string        // where a body past 1 MiB is spooled ("": os.TempDir())
	ttl  time.Duration // Config.StagedTTL
	max  int64         // Config.MaxStagedBytes
	now  func() time.Time
	mu   sync.Mutex
	by   map[uuid.UUID]*stage
	used int64 // bytes the stages hold, in by or not (stage.size)
}

type stage struct {
	upload uuid.UUID
	buf    *spool.Buffer
	sum    hash.Hash // SHA-256 of the bytes in buf
	at     time.Time // when its latest part was staged
	size   int64     // bytes it holds of stages.used: buf's, and a part's being written
}

// held returns what the node holds of peer from's body, nil for nothing
// (a body whose part is being written counts as nothing).
func (s *stages) held(from uuid.UUID) *Staged {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.by[from]
	if st == nil {
		return nil
	}
	return &Staged{Upload: st.upload.String(), Received: st.buf.Len(), SHA256: hex.EncodeToString(st.sum.Sum(nil))}
}

func newStages(dir string, ttl time.Duration, max int64) *stages {
	return &stages{dir: dir, ttl: ttl, max: max, now: time.Now, by: map[uuid.UUID]*stage{}}
}

// sweep drops the bodies whose latest part was staged longer than ttl
// before now. Call it with s.mu held.
func (s *stages) sweep(now time.Time) {
	for from, st := range s.by {
		if now.Sub(st.at) > s.ttl {
			s.drop(st)
			delete(s.by, from)
		}
	}
}

// drop removes st's bytes and gives back what it held of s.used. Call it
// with s.mu held.
func (s *stages) drop(st *stage) {
	st.buf.Discard()
	s.used -= st.size
	st.size = 0
}

// discard drops st, a body add returned whole once it is applied.
func (s *stages) discard(st *stage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(st)
}

// add appends part pt of peer from, n bytes read from r. With more, it
// returns the bytes received so far; the last part returns the whole
// body instead, which the caller applies and then discards (discard). A
// part that does not follow the bytes received of its upload, or of an
// upload not in progress (a later one of the peer replaced it, it was
// dropped, or it never began), is refused with dbsync.ErrPushIncomplete:
// nothing was applied, and the sender sends the body again from its first
// part. A part that would take the body past max is refused with
// dbsync.ErrTooLarge, the body dropped (it never fits); one that would
// take the bodies of all peers past it, with dbsync.ErrBusy, the body
// kept for the sender to resume later.
func (s *stages) add(from uuid.UUID, pt *part, n int64, r io.Reader) (int64, *stage, error) {
	s.mu.Lock()
	s.sweep(s.now())
	st := s.by[from]
	switch {
	case pt.offset == 0:
		if st != nil {
			delete(s.by, from)
			s.drop(st)
		}
		st = &stage{upload: pt.upload, buf: &spool.Buffer{Dir: s.dir}, sum: sha256.New()}
	case st == nil || st.upload != pt.upload:
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: a part of apply body %s at offset %d, which is not being received (a later body of the peer replaced it, it was dropped, or it never began): send the body again", dbsync.ErrPushIncomplete, pt.upload, pt.offset)
	case st.buf.Len() != pt.offset:
		received := st.buf.Len()
		delete(s.by, from)
		s.drop(st)
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: a part of apply body %s at offset %d, after %d bytes received: send the body again", dbsync.ErrPushIncomplete, pt.upload, pt.offset, received)
	default:
		// Taken out while the part is written.
		delete(s.by, from)
	}
	if n > s.max-pt.offset {
		s.drop(st)
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: a part of apply body %s would stage %d bytes, past this node's peerhttp.Config.MaxStagedBytes (%d): the body was dropped",
			dbsync.ErrTooLarge, pt.upload, pt.offset+n, s.max)
	}
	if n > s.max-s.used {
		if pt.offset > 0 {
			s.by[from] = st // kept: the sender resumes it later
		}
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: the bodies staged for the peers hold %d bytes of this node's peerhttp.Config.MaxStagedBytes (%d): retry later",
			dbsync.ErrBusy, s.used, s.max)
	}
	s.used += n
	st.size += n
	s.mu.Unlock()
	if _, err := io.Copy(io.MultiWriter(st.buf, st.sum), io.LimitReader(r, n)); err != nil {
		s.discard(st)
		return 0, nil, fmt.Errorf("peerhttp: stage an apply part: %w", err)
	}
	if st.buf.Len() != pt.offset+n {
		s.discard(st)
		return 0, nil, fmt.Errorf("peerhttp: stage an apply part: %d bytes read, not %d", st.buf.Len()-pt.offset, n)
	}
	if !pt.more {
		return st.buf.Len(), st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.at = s.now()
	if s.by[from] != nil {
		// A later body of the peer began meanwhile: this one is dropped.
		s.drop(st)
		return 0, nil, fmt.Errorf("%w: apply body %s was replaced by a later body of the peer", dbsync.ErrPushIncomplete, pt.upload)
	}
	s.by[from] = st
	return st.buf.Len(), nil, nil
}
