package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/spool"
)

// Peer is the other end of a Sync, answering requests one at a time: a
// *Node in the same process (Node.AsPeer) or a node reached over HTTP
// (peerhttp.Peer). Package stream does not implement it: a stream session
// exchanges both feeds at once over one connection, with the two halves of
// Sync's loop (Node.Feed sends, Node.Apply receives).
type Peer interface {
	// ID returns the peer's node identity.
	ID(ctx context.Context) (uuid.UUID, error)
	// Changes reads the peer's change feed (see Node.Changes).
	Changes(ctx context.Context, after Position, limit int, except uuid.UUID, full bool) (*Batch, error)
	// Cursor returns how far the peer has applied the feed of node (see
	// Node.Cursor).
	Cursor(ctx context.Context, node uuid.UUID) (Position, error)
	// Apply makes the peer apply pages of node from's feed in one
	// transaction (see Node.Apply).
	Apply(ctx context.Context, from uuid.UUID, next func() (*Batch, error)) (int, error)
}

var _ Peer = (*local)(nil)

// local adapts a Node to Peer (its ID method cannot fail).
type local struct{ *Node }

func (l local) ID(context.Context) (uuid.UUID, error) { return l.Node.id, nil }

// AsPeer returns the node as a Peer, for syncing two nodes of one process.
func (n *Node) AsPeer() Peer { return local{n} }

// Report describes a two-way sync.
type Report struct {
	Peer uuid.UUID
	// Pulled and Pushed count the versions that won on each side.
	Pulled, Pushed int
	// Resynced is true when this node had to take the peer's whole state.
	Resynced bool
	Duration time.Duration
}

// String summarizes the sync on one line, e.g. "with 1f0c…: pulled 2
// version(s), pushed 1 version(s)" (the peer's full identity), with
// "; took the peer's whole state" after a resynchronization.
func (r *Report) String() string {
	s := fmt.Sprintf("with %s: pulled %d version(s), pushed %d version(s)", r.Peer, r.Pulled, r.Pushed)
	if r.Resynced {
		s += "; took the peer's whole state"
	}
	return s
}

// Sync exchanges changes with a peer, both ways: it pulls the peer's
// changes since its cursor and applies them in one transaction, then sends
// its own since the peer's cursor, which the peer applies in one
// transaction. Either step can fail alone; a repeated Sync completes it.
//
// A pull that fails on a bound of this node (a *LimitError: a row of the
// peer larger than it) does not stop the push: Sync pushes, then returns
// the pull's error.
//
// It first reads the peer's cursor for this node: when it is not valid in
// its epoch, this node was restored from a backup (see Position); the
// pull then asks for this node's own versions too, the ones it lost, and
// the push sends the peer this node's whole state.
func (n *Node) Sync(ctx context.Context, remote Peer) (rep *Report, err error) {
	start := time.Now()
	defer func() {
		ev := dbsync.Event{Op: "sync", Err: err}
		if rep != nil {
			ev.Peer, ev.Operations = rep.Peer, int64(rep.Pulled+rep.Pushed)
		}
		n.emit(ctx, ev, start)
	}()
	rid, err := remote.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("peer: hello: %w", err)
	}
	if rid == n.id {
		return nil, fmt.Errorf("%w (%s)", ErrSameNode, rid)
	}
	rep = &Report{Peer: rid}
	// (The push reads the peer's cursor again: the pull may have shown the
	// peer it was restored, and it then asks for its own versions.)
	if err := n.checkRestored(ctx, rid, remote); err != nil {
		return rep, err
	}
	rep.Pulled, rep.Resynced, err = n.Pull(ctx, rid, remote)
	if errors.Is(err, ErrConstraint) {
		// The peer may hold rows this node deleted and forgot (it was out
		// of reach longer than the tombstone horizon) and send rows that
		// reference them. Pushing first makes it resynchronize and drop
		// them; then the pull can succeed.
		pushed, perr := n.Push(ctx, rid, remote)
		if perr == nil {
			rep.Pushed = pushed
			rep.Pulled, rep.Resynced, err = n.Pull(ctx, rid, remote)
		}
	}
	if over := (*LimitError)(nil); errors.As(err, &over) {
		// Pages of the peer this node cannot receive (a row larger than
		// its bound) fail every pull the same until the bound is raised:
		// the push, apart, still goes, and the error is the pull's.
		pushed, perr := n.Push(ctx, rid, remote)
		rep.Pushed += pushed
		if perr != nil {
			return rep, errors.Join(err, perr)
		}
		return rep, err
	}
	if err != nil {
		return rep, err
	}
	pushed, err := n.Push(ctx, rid, remote)
	rep.Pushed += pushed
	if err != nil {
		return rep, err
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// Pull applies the peer's changes since this node's cursor for it (with
// this node's own versions when it asks for them: Position.Own). When the
// peer has purged tombstones past that cursor, or the cursor is not valid
// in its epoch (the peer was restored from a backup), it takes the peer's
// whole state instead (resync is then true).
func (n *Node) Pull(ctx context.Context, rid uuid.UUID, remote Peer) (applied int, resync bool, err error) {
	after, err := n.Cursor(ctx, rid)
	if err != nil {
		return 0, false, err
	}
	full := false
	for attempt := 0; attempt < 2; attempt++ {
		pos, done := after, false
		if full {
			// (The cursor's epoch goes with the resynchronization's
			// requests: the peer tells how far it holds, CursorEnd.)
			pos = Position{Epoch: after.Epoch}
		}
		answered := false // a page said it holds this node's own versions
		var pulled int64  // counted against Config.MaxPullBytes
		next := func() (*Batch, error) {
			if done {
				return nil, nil
			}
			b, err := remote.Changes(ctx, pos, n.cfg.BatchSize, n.id, full)
			if err != nil {
				return nil, err
			}
			if b.More && b.Last <= pos.Seq {
				// (Asked again from there, it would answer the same, for
				// ever: a node's page that says more follow ends past the
				// position it was asked from.)
				return nil, fmt.Errorf("%w: the peer's page after position %d says more follow but ends at %d", dbsync.ErrBadResponse, pos.Seq, b.Last)
			}
			pulled += pullOverhead
			for _, c := range b.Changes {
				pulled += int64(len(c.Row)+len(c.ID)+len(c.Table)) + pullOverhead
			}
			if pulled > n.cfg.MaxPullBytes {
				return nil, (&LimitError{Limit: "peer.Config.MaxPullBytes", Max: n.cfg.MaxPullBytes, Size: pulled}).atFirst(b)
			}
			pos.Seq, done = b.Last, !b.More
			if !full {
				pos.Epoch = b.Epoch
			}
			answered = answered || b.Own || b.Full
			return b, nil
		}
		if _, inProcess := remote.(local); !inProcess && dialect.SingleWriter(n.db) {
			// On SQLite a remote peer's pages are read before the
			// transaction opens: the transaction holds the database's write
			// lock, which every request this node serves needs (HTTP
			// authentication records the request's nonce), and the remote
			// peer may be pulling from this node while holding its own: two
			// nodes pulling from each other would wait on each other until
			// the busy timeout. (On PostgreSQL the apply locks only the node
			// row, which serving requests does not need.)
			fetched, release, perr := prefetch(next, n.cfg.SpoolDir)
			if perr != nil {
				fetched, release = func() (*Batch, error) { return nil, perr }, func() {}
			}
			next = fetched
			defer release()
		}
		applied, err = n.Apply(ctx, rid, next)
		if err == nil && after.Own && !answered {
			// A peer of a release that does not know Position.Own sent its
			// feed without this node's versions: asking again would not get
			// them. Given up for this peer (Apply records the others).
			err = n.giveUpReclaim(ctx, rid)
		}
		if errors.Is(err, ErrResync) && !full {
			full = true
			n.log.InfoContext(ctx, "peer: resynchronizing", "peer", rid.String())
			continue
		}
		return applied, full, err
	}
	return applied, full, err
}

// Push sends this node's changes since the peer's cursor for it; the peer
// applies them in one transaction. When this node has purged tombstones
// past that cursor it sends its whole state, which the peer takes as a
// resynchronization.
func (n *Node) Push(ctx context.Context, rid uuid.UUID, remote Peer) (int, error) {
	after, err := remote.Cursor(ctx, n.id)
	if err != nil {
		return 0, err
	}
	next, err := n.Feed(ctx, rid, after)
	if err != nil {
		return 0, err
	}
	return remote.Apply(ctx, n.id, next)
}

// Feed returns the pages of this node's changes that peer rid lacks: those
// after rid's cursor for this node (after), leaving out rid's own unless it
// asks for them (after.Own), or, when this node has purged tombstones past
// that cursor or the cursor is not valid in its epoch (Changes), its
// whole state (pages marked Full, which rid applies as a
// resynchronization). The iterator returns nil after the last page. It is the sending half of Sync (Push
// hands it to the peer's Apply; package stream sends its pages over a
// connection); Apply is the receiving half.
func (n *Node) Feed(ctx context.Context, rid uuid.UUID, after Position) (func() (*Batch, error), error) {
	full := false
	if _, err := n.Changes(ctx, after, 1, rid, false); errors.Is(err, ErrResync) {
		full, after = true, Position{Epoch: after.Epoch}
	} else if err != nil {
		return nil, err
	}
	pos, done := after, false
	return func() (*Batch, error) {
		if done {
			return nil, nil
		}
		b, err := n.Changes(ctx, pos, n.cfg.BatchSize, rid, full)
		if err != nil {
			return nil, err
		}
		pos.Seq, done = b.Last, !b.More
		if !full {
			pos.Epoch = b.Epoch
		}
		return b, nil
	}, nil
}

// pullOverhead is what a change, and a page, count against
// Config.MaxPullBytes besides their rows' bytes.
const pullOverhead = 64

// giveUpReclaim records that this node asked peer rid for its own
// versions as far as it can (see Pull).
func (n *Node) giveUpReclaim(ctx context.Context, rid uuid.UUID) error {
	_, err := n.db.ExecContext(ctx, `UPDATE sync_lww_cursor_epochs SET reclaimed = (SELECT restores FROM sync_lww_feed WHERE id = 1) WHERE peer = ?`, rid.String())
	if err != nil {
		return fmt.Errorf("peer: record the reclaim: %w", err)
	}
	n.log.WarnContext(ctx, "peer: a peer that does not send a node its own versions (an older release): the versions this node lost, which it may hold, do not come back from it", slog.String("peer", rid.String()))
	return nil
}

// checkRestored reads the peer's cursor for this node and checks it
// against this node's feed (Node.checkPosition): a position the feed does
// not hold now means this node was restored from a backup, which it
// records (Node.restored) so that the pull that follows asks for its own
// versions.
func (n *Node) checkRestored(ctx context.Context, rid uuid.UUID, remote Peer) error {
	pos, err := remote.Cursor(ctx, n.id)
	if err != nil {
		return err
	}
	var epoch string
	var head int64
	if err := n.db.QueryRowContext(ctx, "SELECT f.epoch, n.seq FROM sync_lww_feed f, sync_lww_node n WHERE f.id = 1 AND n.id = 1").Scan(&epoch, &head); err != nil {
		return fmt.Errorf("peer: read the node: %w", err)
	}
	err = n.checkPosition(ctx, n.db, pos, epoch, head)
	if errors.Is(err, errRestored) {
		n.restored(ctx, epoch, rid, err)
		return nil
	}
	return err
}

// emit sends an event of this node to Config.OnEvent.
func (n *Node) emit(ctx context.Context, e dbsync.Event, start time.Time) {
	if n.cfg.OnEvent == nil {
		return
	}
	e.Side = "peer"
	e.Duration = time.Since(start)
	n.cfg.OnEvent(ctx, e)
}

// prefetchMemory bounds the pages prefetch keeps in memory (their rows'
// bytes and about 64 bytes more a change); the following ones go to a
// temporary file.
const prefetchMemory = 16 << 20

// prefetch reads every page of next and returns an iterator over them and
// the function that releases them: the first pages in memory, up to
// prefetchMemory, the others in a spool file (spool.Records), so that a
// backlog of any size is read with memory for about one page more. The
// file goes in dir ("": os.TempDir()).
func prefetch(next func() (*Batch, error), dir string) (func() (*Batch, error), func(), error) {
	var pages []*Batch
	rec := spool.Records{Buffer: spool.Buffer{Dir: dir}}
	held, spilled := 0, false
	for {
		b, err := next()
		if err != nil {
			rec.Discard()
			return nil, nil, err
		}
		if b == nil {
			break
		}
		if !spilled {
			for _, c := range b.Changes {
				held += len(c.Row) + len(c.ID) + 64
			}
			if spilled = held > prefetchMemory && len(pages) > 0; !spilled {
				pages = append(pages, b)
				continue
			}
		}
		p, err := json.Marshal(b)
		if err == nil {
			err = rec.Add(p)
		}
		if err != nil {
			rec.Discard()
			return nil, nil, fmt.Errorf("peer: prefetch: %w", err)
		}
	}
	more, err := rec.Iter()
	if err != nil {
		rec.Discard()
		return nil, nil, fmt.Errorf("peer: prefetch: %w", err)
	}
	return func() (*Batch, error) {
		if len(pages) > 0 {
			b := pages[0]
			pages[0], pages = nil, pages[1:]
			return b, nil
		}
		p, err := more()
		if errors.Is(err, io.EOF) {
			return nil, nil
		} else if err != nil {
			return nil, fmt.Errorf("peer: prefetch: %w", err)
		}
		var b Batch
		if err := json.Unmarshal(p, &b); err != nil {
			return nil, fmt.Errorf("peer: prefetch: %w", err)
		}
		return &b, nil
	}, rec.Discard, nil
}
