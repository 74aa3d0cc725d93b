package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// ErrClosed is returned by Watch once the server is closed ([Server.Close]).
// It wraps dbsync.ErrBusy: over HTTP the node is answered 503 busy and
// retries, e.g. on another server process.
var ErrClosed = fmt.Errorf("%w: server closed", dbsync.ErrBusy)

// Watch waits until a version after req.After is committed, then returns
// the latest version with Changed set; after wait (req.Wait, or wait when
// req.Wait is 0 or longer) without one, it returns the latest version
// with Changed false. When the database's latest version is below
// req.After (it lost versions the node holds: restored from a backup,
// failed over to a standby that lacked them; the node must repair), it
// returns it at once, Changed false. When req.AfterToken names another
// version of that number than the server's (it lost the node's version
// and numbered a new one as it), it returns dbsync.ErrRepairNeeded at
// once (one lookup, before the wait). It returns ctx's error when ctx ends
// first, and ErrClosed once the server is closed.
//
// Waiters are woken without polling: on PostgreSQL every version's
// transaction notifies the schema's channel (NOTIFY, delivered at commit)
// and each Server listens on one connection of its own, taken from the
// database's pool when the first Watch starts and held until Close, so a
// push on any server process wakes the waiters of all; after
// Config.WatchPoll without a notification the feed reads the latest
// version on it (a version whose notification never came, as through a
// pooler in transaction mode, wakes the waiters then), and takes another
// connection when the read goes unanswered (a connection lost without a
// reset). While that
// connection is down (it is reconnected with backoff), the latest version
// is polled every Config.WatchPoll instead; so it is, always, when the
// database is not reached through the pgx driver or its pool allows a
// single connection (which the listener would hold). On SQLite, the
// pushes of this Server wake its waiters; a version committed by another
// process is seen at the latest when the wait ends.
func (s *Server) Watch(ctx context.Context, node int64, req *protocol.WatchRequest, wait time.Duration) (resp *protocol.WatchResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "watch", NodeID: node}
	defer func() {
		ev.Err = err
		if resp != nil {
			ev.VersionID = resp.LatestVersionID
		}
		s.emit(ctx, ev, start)
	}()
	s.noteSeen(ctx, node)
	if req == nil {
		return nil, fmt.Errorf("%w: empty watch", dbsync.ErrBadRequest)
	}
	if req.AfterToken != "" {
		if err := checkVersionToken(req.AfterToken); err != nil {
			return nil, err
		}
		stored, err := versionToken(ctx, s.db, req.After)
		if err != nil {
			return nil, err
		}
		if stored != "" {
			if err := sameVersion(req.After, req.AfterToken, &stored, true); err != nil {
				return nil, err
			}
		}
	}
	if req.Wait > 0 && req.Wait < wait {
		wait = req.Wait
	}
	return s.changes().wait(ctx, s.db, req.After, wait)
}

// WatchPull is Watch answering a new version with the pull from
// req.After when req.Pull is set (GET /watch?pull=1): once a version after
// req.After commits, it streams to emit what Pull would for a request
// from req.After with req.ChunkSize, asking no parents (no deleted rows)
// and about no push, and reports pulled true. Otherwise, it returns
// Watch's answer: when req.Pull is not set, nothing changed, the server
// holds nodes to scopes (a pull would need the node's held keys), or the
// pull failed before its first line (the node pulls on its own, and gets
// the error there).
func (s *Server) WatchPull(ctx context.Context, node int64, req *protocol.WatchRequest, wait time.Duration, emit Emit) (resp *protocol.WatchResponse, pulled bool, err error) {
	resp, err = s.Watch(ctx, node, req, wait)
	if err != nil || !req.Pull || !resp.Changed || s.scopes != nil {
		return resp, false, err
	}
	after := req.After
	started := false
	err = s.Pull(ctx, node, &protocol.PullRequest{LatestVersionID: &after, LatestVersionToken: req.AfterToken, ChunkSize: req.ChunkSize, Deleted: map[string][]string{}},
		func(m *protocol.Message) error {
			started = true
			return emit(m)
		})
	if err != nil && !started && ctx.Err() == nil {
		return resp, false, nil
	}
	return resp, true, err
}

// Close stops the change feed: waiting Watch calls return ErrClosed, and
// so do later ones; the listening connection is closed. It stops the
// periodic trim (Config.TrimEvery) and waits for it, and records the
// versions the nodes were last seen holding, waiting at most 10 seconds
// for the database (a database that does not answer, its tables locked
// or its connection cut without a reset, would else hold Close, and the
// shutdown after it, for ever; versions not recorded only hold the trim
// back). The other methods
// keep working, and the database is not closed: close the Server first.
// Over HTTP, close it before shutting the http.Server down, which waits
// for the watch requests it holds.
func (s *Server) Close() error {
	s.stopTrimmer()
	s.changes().close()
	ctx, cancel := context.WithTimeout(context.Background(), s.closeWait)
	defer cancel()
	s.flushHeld(ctx)
	return nil
}

// closeFlushWait bounds how long Close waits for the database to record
// the held versions not written yet (flushHeld).
const closeFlushWait = 10 * time.Second

// Watching returns the number of Watch calls waiting for a version (for
// metrics).
func (s *Server) Watching() int {
	f := s.changes()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

// changes returns the server's feed, made on first use.
func (s *Server) changes() *feed {
	s.feedOnce.Do(func() { s.feed = newFeed(s.log, s.cfg.WatchPoll) })
	return s.feed
}

// feed wakes the waiters of Watch when a version commits.
type feed struct {
	log  *slog.Logger
	poll time.Duration

	mu      sync.Mutex
	latest  int64
	losses  uint64        // how many times observe saw versions lost
	exact   bool          // latest is the database's: the listener is up
	changed chan struct{} // closed when latest advances or the feed closes
	closed  bool
	waiting int // Watch calls parked
	started bool
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the listener has returned
}

func newFeed(log *slog.Logger, poll time.Duration) *feed {
	return &feed{log: log, poll: poll, changed: make(chan struct{})}
}

// advance records that version v is committed and wakes the waiters when
// it is new.
func (f *feed) advance(v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v > f.latest && !f.closed {
		f.latest = v
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// observe records v, the latest version a read of the database returned,
// begun when the feed held seen after losses losses. Higher, it advances
// the feed. Lower than seen while the feed still holds seen, the database
// lost versions the feed had seen committed (restored from a backup,
// failed over to a standby that lacked them): every version the feed
// takes was committed before it took it, so a read begun after returns at
// least as much unless they are gone. The feed takes v then, so that
// Watch answers a node holding a lost version at once with the
// database's latest, below the node's (the node must repair), not with a
// version the database no longer has. A read begun before another read
// saw a loss is dropped: it may have answered before the versions were
// lost, and would bring a lost version back (the next notification or
// read brings a newer one).
func (f *feed) observe(seen int64, losses uint64, v int64) {
	f.mu.Lock()
	if f.losses != losses || f.closed {
		f.mu.Unlock()
		return
	}
	if v < seen && f.latest == seen {
		// The waiters after a version now lost answer at once.
		f.latest = v
		f.losses++
		close(f.changed)
		f.changed = make(chan struct{})
	}
	f.mu.Unlock()
	f.advance(v)
}

// current returns the feed's latest version.
func (f *feed) current() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest
}

// read reads the database's latest version with latest and records it
// (observe); it returns the feed's latest version then.
func (f *feed) read(latest func() (int64, error)) (int64, error) {
	f.mu.Lock()
	seen, losses := f.latest, f.losses
	f.mu.Unlock()
	v, err := latest()
	if err != nil {
		return 0, err
	}
	f.observe(seen, losses, v)
	return f.current(), nil
}

// readDB is read from db's pool.
func (f *feed) readDB(ctx context.Context, db bun.IDB) (int64, error) {
	return f.read(func() (int64, error) { return latestVersion(ctx, db) })
}

func (f *feed) setExact(exact bool) {
	f.mu.Lock()
	f.exact = exact
	f.mu.Unlock()
}

// state returns what a waiter needs, under the lock.
func (f *feed) state() (latest int64, exact, closed bool, changed chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest, f.exact, f.closed, f.changed
}

// wait is Server.Watch.
func (f *feed) wait(ctx context.Context, db *bun.DB, after int64, wait time.Duration) (*protocol.WatchResponse, error) {
	f.start(db)
	latest, exact, closed, changed := f.state()
	if closed {
		return nil, ErrClosed
	}
	if latest < after || latest == after && !exact {
		// Only the database knows (below after, the node may hold a
		// version whose notification has not come yet); a commit after
		// this read wakes changed.
		v, err := f.readDB(ctx, db)
		if err != nil {
			return nil, err
		}
		latest = v
	}
	switch {
	case latest > after:
		return &protocol.WatchResponse{LatestVersionID: latest, Changed: true}, nil
	case latest < after:
		// The database lacks versions the node holds (it lost them, or
		// the node's version is not this database's): no version to
		// wait for; the node must repair.
		return &protocol.WatchResponse{LatestVersionID: latest}, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	f.park(1)
	defer f.park(-1)
	for {
		select {
		case <-changed:
			if latest, _, closed, changed = f.state(); closed {
				return nil, ErrClosed
			}
			if latest != after { // below: the database lost the node's version (observe)
				return &protocol.WatchResponse{LatestVersionID: latest, Changed: latest > after}, nil
			}
		case <-timer.C:
			if latest, exact, _, _ = f.state(); !exact {
				v, err := f.readDB(ctx, db)
				if err != nil {
					return nil, err
				}
				latest = v
			}
			return &protocol.WatchResponse{LatestVersionID: latest, Changed: latest > after}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *feed) park(n int) {
	f.mu.Lock()
	f.waiting += n
	f.mu.Unlock()
}

// start starts the listener on PostgreSQL, once.
func (f *feed) start(db *bun.DB) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started || f.closed || dialect.MustOf(db) != dialect.Postgres {
		return
	}
	f.started = true
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.stopped = cancel, make(chan struct{})
	go func() {
		defer close(f.stopped)
		f.listen(ctx, db)
	}()
}

// Listener reconnection: the first retry after listenRetry, doubling up to
// maxListenRetry; polling meanwhile.
const (
	listenRetry    = 100 * time.Millisecond
	maxListenRetry = 10 * time.Second
)

// listen keeps a listening connection (dialect.Listen) until ctx ends,
// reconnecting with backoff, and polls the latest version while it is
// down.
func (f *feed) listen(ctx context.Context, db *bun.DB) {
	retry := listenRetry
	for {
		err := dialect.Listen(ctx, db, f.poll, func(read func() (int64, error)) error {
			if _, err := f.read(read); err != nil {
				return err
			}
			f.setExact(true)
			retry = listenRetry
			return nil
		}, func(payload string) {
			if v, err := strconv.ParseInt(payload, 10, 64); err == nil {
				f.advance(v)
			}
		})
		f.setExact(false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, dialect.ErrNoListen) {
			f.log.WarnContext(ctx, "server: the change feed polls: "+err.Error())
			retry = -1
		} else {
			f.log.WarnContext(ctx, "server: the change feed's listener failed; polling until it reconnects",
				slog.String("error", err.Error()), slog.Duration("retry", retry))
		}
		if !f.pollFor(ctx, db, retry) {
			return
		}
		retry = min(2*retry, maxListenRetry)
	}
}

// pollFor polls the latest version every f.poll for d (d < 0: until ctx
// ends); it reports false when ctx ended.
func (f *feed) pollFor(ctx context.Context, db *bun.DB, d time.Duration) bool {
	end := time.Now().Add(d)
	for d < 0 || time.Now().Before(end) {
		step := f.poll
		if d >= 0 {
			step = min(step, time.Until(end))
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(step):
		}
		// Bounded: a pooled connection lost without a reset would hold
		// the poll for minutes.
		pctx, cancel := context.WithTimeout(ctx, dialect.AnswerWait(f.poll))
		_, err := f.readDB(pctx, db)
		cancel()
		if err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "server: the change feed's poll failed", slog.String("error", err.Error()))
		}
	}
	return true
}

// close releases the waiters and stops the listener.
func (f *feed) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.changed)
	cancel, stopped := f.cancel, f.stopped
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-stopped
	}
}
