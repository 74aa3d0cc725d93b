package server

import (
	"context"
	"fmt"
	"sync"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// Shared pulls. When a version commits, every node watching the change
// feed is woken and pulls at once, most of them from the same version:
// the same answer, computed once per node. A pull that asks nothing of its
// own (no scopes on the server, no unanswered push, no deleted rows to
// name) and whose node has no version after its own (no rebased push to
// leave out) gets the answer of any other such pull from the same version
// up to the same latest version, with the same chunk size: the first of
// them computes it, recording it (then sends it to its node); the others
// wait for it and replay it, later ones too while the latest version
// stays. The answer holds the rows as they are in one snapshot at that
// latest version, as each pull's own answer would: rows change only with
// a new version (a new key), and direct writes waiting to be sealed are
// sealed into one before a pull reads the latest version.
//
// Recorded answers are kept while the latest version stays the same, at
// most maxSharedPulls of them, each up to maxSharedBytes: a bigger answer
// is not recorded, and the pulls waiting for it make their own as soon as
// it outgrows the bound.

const (
	maxSharedPulls = 16
	maxSharedBytes = 256 << 10
)

// shareable reports whether a pull may get a shared answer, as far as the
// request tells (pullState tells the rest).
func (s *Server) shareable(req *protocol.PullRequest) bool {
	return s.scopes == nil && req.PushID == "" && len(req.Deleted) == 0 && req.Backfill == ""
}

// pullKey is what makes two shareable pulls' answers the same.
type pullKey struct {
	schema        string // the fingerprint of the schema served (ForSchema views leave columns out)
	after, latest int64
	chunk         int
	allParents    bool // Deleted absent: every referenced row is sent
}

// sharedPull is one pull's answer, computed once.
type sharedPull struct {
	p    *pullShares
	key  pullKey
	done chan struct{} // closed once ok, and when ok the fields below, are final
	ok   bool          // the answer is complete and may be replayed
	// closed is done's state, under p.mu.
	closed bool

	// Written by the leader alone until done closes.
	bad  bool // not to be replayed: too big, or not the node-free answer
	size int
	msgs []*protocol.Message
	// latest is the snapshot's latest version (the key's, or newer when a
	// version committed in between).
	latest    int64
	ops, rows int64
}

// recording returns an emit that records the answer instead of passing
// it on to emit, while it stays shareable and within the bound: the
// leader's node gets it once it is complete and published (sharedPull),
// so that the pulls waiting for it never wait on the leader's node
// reading it. Once the answer is unusable, what was recorded and what
// follows goes to emit.
func (sp *sharedPull) recording(emit Emit, latest int64) Emit {
	sp.latest = latest
	return func(m *protocol.Message) error {
		if sp.bad {
			return emit(m)
		}
		if sp.size += messageSize(m); sp.size <= sp.p.maxBytes {
			sp.msgs = append(sp.msgs, m)
			return nil
		}
		held := sp.msgs
		sp.unusable()
		for _, h := range held {
			if err := emit(h); err != nil {
				return err
			}
		}
		return emit(m)
	}
}

// unusable marks the answer as not to be replayed, and releases the pulls
// waiting for it at once: they make their own.
func (sp *sharedPull) unusable() {
	sp.bad, sp.msgs = true, nil
	sp.p.finish(sp, nil)
}

// messageSize estimates the memory a recorded message holds.
func messageSize(m *protocol.Message) int {
	n := 64 + 32*len(m.Versions)
	for _, op := range m.Operations {
		n += 64 + len(op.Table) + len(op.RowID)
	}
	for _, raws := range m.Payload {
		for _, raw := range raws {
			n += 24 + len(raw)
		}
	}
	return n
}

// pullShares holds the shared answers of the server's latest version.
type pullShares struct {
	maxBytes int // the bound of a recorded answer: maxSharedBytes

	mu      sync.Mutex
	latest  int64
	entries map[pullKey]*sharedPull
}

func (s *Server) shares() *pullShares {
	s.sharesOnce.Do(func() { s.pullShares = &pullShares{maxBytes: maxSharedBytes, entries: map[pullKey]*sharedPull{}} })
	return s.pullShares
}

// join returns the answer for key, computed or being computed, or a new
// one the caller computes (lead); nil when none may be kept (an older
// latest version than the kept answers', or too many kept).
func (p *pullShares) join(key pullKey) (sp *sharedPull, lead bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case key.latest < p.latest:
		return nil, false
	case key.latest > p.latest:
		clear(p.entries)
		p.latest = key.latest
	}
	if sp := p.entries[key]; sp != nil {
		return sp, false
	}
	if len(p.entries) >= maxSharedPulls {
		return nil, false
	}
	sp = &sharedPull{p: p, key: key, done: make(chan struct{})}
	p.entries[key] = sp
	return sp, true
}

// finish publishes the answer its leader computed (err: it failed), once:
// a later call does nothing. A complete answer whose snapshot saw a newer
// version is kept under that version's key too.
func (p *pullShares) finish(sp *sharedPull, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sp.closed {
		return
	}
	sp.closed, sp.ok = true, err == nil && !sp.bad
	close(sp.done)
	key := sp.key
	if !sp.ok {
		if p.entries[key] == sp {
			delete(p.entries, key)
		}
		return
	}
	if sp.latest > key.latest && sp.latest >= p.latest {
		if sp.latest > p.latest {
			clear(p.entries)
			p.latest = sp.latest
		}
		key.latest = sp.latest
		if _, taken := p.entries[key]; !taken && len(p.entries) < maxSharedPulls {
			p.entries[key] = sp
		}
	}
}

// sharedPull answers a shareable pull from a shared answer, computing it
// when it is the first. shared is false when the pull must make its own
// answer (its node has a version after claimed; the shared answer failed
// or was not recorded): nothing was emitted then.
func (s *Server) sharedPull(ctx context.Context, node int64, req *protocol.PullRequest, claimed int64, chunk int, emit Emit, ev *dbsync.Event) (shared bool, err error) {
	st, err := readPullState(ctx, s.db, node, claimed)
	if err != nil {
		return false, err
	}
	if st.pending {
		if _, err := s.Seal(ctx); err != nil {
			return false, err
		}
		if st, err = readPullState(ctx, s.db, node, claimed); err != nil {
			return false, err
		}
	}
	if st.own || claimed > st.latest {
		return false, nil
	}
	key := pullKey{schema: s.served, after: claimed, latest: st.latest, chunk: chunk, allParents: req.Deleted == nil}
	p := s.shares()
	sp, lead := p.join(key)
	switch {
	case sp == nil:
		return false, nil
	case lead:
		err := s.pullFrom(ctx, node, req, claimed, chunk, nil, nil, nil, emit, ev, sp)
		sp.ops, sp.rows = ev.Operations, ev.Rows
		recorded := !sp.bad
		p.finish(sp, err)
		if err != nil || !recorded {
			return true, err
		}
		// Published first: the others replay it while this node reads.
		for _, m := range sp.msgs {
			if err := emit(m); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	select {
	case <-sp.done:
	case <-ctx.Done():
		return true, ctx.Err()
	}
	if !sp.ok {
		return false, nil
	}
	if sp.latest > st.latest {
		// The answer holds versions committed after this pull read the
		// latest: none may be the node's.
		if st, err = readPullState(ctx, s.db, node, st.latest); err != nil || st.own {
			return false, err
		}
	}
	for _, m := range sp.msgs {
		if err := emit(m); err != nil {
			return true, err
		}
	}
	ev.VersionID, ev.Operations, ev.Rows, ev.Shared = sp.latest, sp.ops, sp.rows, true
	return true, nil
}

// pullState is what a pull reads first.
type pullState struct {
	latest      int64   // the latest version
	latestToken string  // its token ("": none)
	token       *string // the token of the pull's version (nil: none)
	own         bool    // the node has a version after the pull's and up to latest
	ownLatest   *int64  // the greatest of those (nil: none)
	pending     bool    // direct writes wait to be sealed (Seal)
}

// readPullState reads, in one statement, the latest version and its
// token, the token of version `after`, the greatest version of node's
// after `after` up to the latest, and whether direct writes wait to be
// sealed.
func readPullState(ctx context.Context, db bun.IDB, node, after int64) (pullState, error) {
	var latest *int64
	var st pullState
	var latestToken *string
	err := db.NewRaw(`SELECT v.latest,
  (SELECT MAX(version_id) FROM sync_versions WHERE node_id = ? AND version_id > ? AND version_id <= v.latest),
  EXISTS (SELECT 1 FROM sync_operations WHERE version_id IS NULL),
  (SELECT token FROM sync_version_tokens WHERE version_id = v.latest), `+tokenOf+`
FROM (SELECT MAX(version_id) AS latest FROM sync_versions) v`, node, after, after).Scan(ctx, &latest, &st.ownLatest, &st.pending, &latestToken, &st.token)
	if err != nil {
		return st, fmt.Errorf("latest version: %w", err)
	}
	st.own = st.ownLatest != nil
	if latest != nil {
		st.latest = *latest
	}
	if latestToken != nil {
		st.latestToken = *latestToken
	}
	return st, nil
}
