package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// WatchTransport is a [Transport] that also carries the change feed
// (docs/protocol.md, "GET BASE/watch"): a request the server holds until
// a version after the node's is committed. [Client.Watch] needs it;
// [HTTPTransport] implements it. It is a separate interface, as
// [ChunkedTransport] is, so that a Transport written for an earlier
// version keeps working.
type WatchTransport interface {
	Transport
	// Watch returns once the server holds a version after req.After, or
	// after about req.Wait without one (Changed false).
	Watch(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, error)
}

// WatchPullTransport is a [WatchTransport] whose watch request can carry
// the pull (docs/protocol.md, "GET BASE/watch", pull=1): the server
// answers a new version with the pull's stream itself, sparing the node a
// second request. [Client.Watch] uses it when the transport implements
// it; [HTTPTransport] does.
type WatchPullTransport interface {
	WatchTransport
	// WatchPull is Watch asking for the pull from req.After (req.Pull is
	// set by the method): it returns the pull's stream (the body of POST
	// /pull, asking no parents and about no push, with req.ChunkSize) when
	// the server answers with it, else the watch answer.
	WatchPull(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, io.ReadCloser, error)
}

// carriedPull is the pull's answer a watch request carried.
type carriedPull struct {
	stream io.ReadCloser
	req    protocol.PullRequest // what it answers
}

// take returns the carried stream when it answers req, the node's pull
// request as it is now (the node may have written or pushed since the
// watch request left); nil otherwise. Either way the stream is no longer
// carried's to close.
func (cp *carriedPull) take(req *protocol.PullRequest) io.ReadCloser {
	if cp == nil || cp.stream == nil {
		return nil
	}
	stream := cp.stream
	cp.stream = nil
	var have, want int64
	if req.LatestVersionID != nil {
		have = *req.LatestVersionID
	}
	if cp.req.LatestVersionID != nil {
		want = *cp.req.LatestVersionID
	}
	if have != want || req.LatestVersionToken != cp.req.LatestVersionToken || req.PushID != "" || req.Deleted == nil || len(req.Deleted) > 0 || req.Held != nil ||
		req.Backfill != "" || req.ChunkSize != cp.req.ChunkSize {
		_ = stream.Close()
		return nil
	}
	return stream
}

// cancelOnClose is a carried stream, which ends its request's context
// when closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// close closes the stream when it was not taken.
func (cp *carriedPull) close() {
	if cp != nil && cp.stream != nil {
		_ = cp.stream.Close()
		cp.stream = nil
	}
}

// WatchOptions tunes [Client.Watch]. The zero value (or nil) is usable.
type WatchOptions struct {
	// Wait is how long each watch request asks the server to wait for a
	// new version; the server may answer sooner (its own bound,
	// handlers.Config.WatchTimeout, default 25 s). Keep it below the HTTP
	// client's response timeout (30 s for the default client). Default
	// 25 s.
	Wait time.Duration
	// Changed, when not nil, wakes the loop to push local writes at once:
	// send on it (without blocking, e.g. into a buffer of 1) after
	// writing. Without it, local writes are pushed when the next watch
	// request ends (a new version, or Wait).
	Changed <-chan struct{}
	// MinBackoff and MaxBackoff bound the pause after a failed watch
	// request or Sync: the first pause is MinBackoff, each failure in a
	// row doubles it up to MaxBackoff, and each is drawn at random between
	// half and all of it (jitter, so that nodes cut off together do not
	// come back together). Defaults 500 ms and 30 s. A watch answered
	// without a new version sooner than MinBackoff (and Wait/2) counts as
	// a failure: a server that ignores the wait is not asked back to back.
	MinBackoff, MaxBackoff time.Duration
	// Stall bounds how long past Wait a watch answer may take to arrive
	// (headers and body), and how long a read of a pull carried in it may
	// wait for its first bytes, before the request is given up as failed
	// (dbsync.ErrNetwork) and made again: a connection that stalls
	// without closing would else hold the loop for ever. Default 10 s.
	// Each later read of a carried pull is bounded by
	// Config.StallTimeout, as a pull's are.
	Stall time.Duration
}

func (o *WatchOptions) withDefaults() WatchOptions {
	out := WatchOptions{}
	if o != nil {
		out = *o
	}
	if out.Wait <= 0 {
		out.Wait = 25 * time.Second
	}
	if out.MinBackoff <= 0 {
		out.MinBackoff = 500 * time.Millisecond
	}
	if out.MaxBackoff <= 0 {
		out.MaxBackoff = 30 * time.Second
	}
	if out.Stall <= 0 {
		out.Stall = 10 * time.Second
	}
	out.MaxBackoff = max(out.MaxBackoff, out.MinBackoff)
	return out
}

// ErrNoWatch is returned by [Client.Watch] when the client's Transport is
// not a [WatchTransport].
var ErrNoWatch = errors.New("client: the transport does not carry the change feed (not a WatchTransport)")

// Watch keeps the node in sync until ctx ends: it syncs, then long-polls
// the server's change feed (GET /watch) and syncs again whenever the
// server has a version the node lacks, when local writes are pending once
// a watch request ends, and at once on opts.Changed. (With nothing to
// push, it only pulls.) Another node's push
// reaches this one without polling, within a request's round trip and a
// pull.
//
// A failed watch request or Sync is retried after a pause with
// exponential backoff and jitter (WatchOptions), at least as long as the
// server's answer asked for (Retry-After of a 503 busy or 429
// rate_limited: dbsync.RetryAfter), and so is a watch answer
// saying the server holds a version the node lacks when the sync (or
// carried pull) it asks for brings none. Watch returns ctx's
// error once ctx ends, or the first error no retry can fix:
// dbsync.ErrNotRegistered, dbsync.ErrNodeInUse, dbsync.ErrSchemaMismatch,
// dbsync.ErrProtocolVersion, dbsync.ErrRepairNeeded (repair, then watch
// again: also when a watch answer says the server's latest version is
// below the node's, its database having lost versions the node holds),
// or ErrNoWatch. Every other error is retried, also a refusal
// only the application can settle (a *dbsync.UniqueConstraintError,
// *dbsync.ScopeError or *dbsync.ValueError naming its rows, or
// dbsync.ErrUnauthorized from a server that does not know the node):
// Watch goes on, pulling the other nodes' versions while the node's
// changes wait, and the error reaches only Config.OnEvent (the Err of
// the push or pull event) and Config.Logger. (A pending change to a row
// that left the node's scope fails the pull itself, merge.md S2: no
// version arrives until the application gives it up.)
//
// Each watch request is reported to Config.OnEvent as an event "watch"
// (VersionID: the server's latest version; Err on failure), except the
// one cut short when ctx ends, and each Sync through its push and pull
// events. Watch does not hold the client's lock
// while it waits: Sync and the other procedures may be called meanwhile.
func (c *Client) Watch(ctx context.Context, opts *WatchOptions) error {
	if c.tr.watch == nil {
		return ErrNoWatch
	}
	o := opts.withDefaults()
	backoff := o.MinBackoff
	// pause waits after a failure (err, when the server answered one: at
	// least the wait it asked for, dbsync.RetryAfter); false when ctx
	// ended.
	pause := func(err error) bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, o.MaxBackoff)
		d = max(d, dbsync.RetryAfter(err))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// behindAt is the node's version when the last watch answer said the
	// server holds a newer one, until the sync or carried pull it asked
	// for is done (-1: none). A server (or a proxy) that keeps saying so
	// while its pulls bring nothing would else be asked again at once, for
	// ever: settle pauses as after a failure while the node's version does
	// not move.
	behindAt := int64(-1)
	settle := func() error {
		at := behindAt
		behindAt = -1
		if at < 0 {
			backoff = o.MinBackoff
			return nil
		}
		v, err := latestVersion(ctx, c.db)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if v != at {
			backoff = o.MinBackoff
			return nil
		}
		c.log.WarnContext(ctx, "client: watch: the server said it holds a newer version, but the pull brought none; retrying",
			slog.Int64("version", v))
		if !pause(nil) {
			return ctx.Err()
		}
		return nil
	}
	needSync := true
	carry := true // ask for the pull in the watch answer (WatchPullTransport)
	for {
		if needSync {
			if err := c.catchUp(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if fatalWatch(err) {
					return err
				}
				if errors.Is(err, dbsync.ErrPullNeeded) {
					// Other nodes pushed first: not a failure of the
					// server; the next watch request answers at once.
					needSync = false
					continue
				}
				c.log.WarnContext(ctx, "client: watch: sync failed; retrying", slog.String("error", err.Error()))
				if !pause(err) {
					return ctx.Err()
				}
				continue
			}
			if err := settle(); err != nil {
				return err
			}
		}
		resp, local, err := c.watchOnce(ctx, &o, &carry)
		switch {
		case ctx.Err() != nil:
			resp.carried.close() // a pull carried as ctx ended
			return ctx.Err()
		case local:
			needSync = true
		case err != nil:
			if fatalWatch(err) {
				return err
			}
			c.log.WarnContext(ctx, "client: watch request failed; retrying", slog.String("error", err.Error()))
			needSync = false
			if !pause(err) {
				return ctx.Err()
			}
		case resp.carried != nil:
			// The answer is the pull: applied as Pull applies its own
			// (or, when the node changed meanwhile, replaced by one).
			// Settled once applied, or once the sync after its failure
			// is done.
			behindAt = resp.after
			if err := c.applyCarried(ctx, resp.carried); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if fatalWatch(err) {
					return err
				}
				c.log.WarnContext(ctx, "client: watch: the carried pull failed; syncing", slog.String("error", err.Error()))
				needSync = true
				continue
			}
			if err := settle(); err != nil {
				return err
			}
			if needSync, err = c.hasLocalChanges(ctx); err != nil {
				return err
			}
		default:
			needSync = resp.behind
			switch {
			case needSync:
				behindAt = resp.after // settled once the sync is done
			case resp.early:
				// No new version, and no wait: the server ignores it
				// (or says changed for a version the node holds).
				c.log.WarnContext(ctx, "client: watch answered at once without a new version; retrying after a pause",
					slog.Int64("version", resp.after))
				if !pause(nil) {
					return ctx.Err()
				}
			default:
				backoff = o.MinBackoff
			}
			if !needSync {
				if needSync, err = c.hasLocalChanges(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// pullWholeLocked is pullWhole under the client's lock.
func (c *Client) pullWholeLocked(ctx context.Context) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.mu.unlock()
	_, err := c.pullWhole(ctx)
	return err
}

// fatalWatch reports the errors Watch returns instead of retrying.
func fatalWatch(err error) bool {
	return errors.Is(err, dbsync.ErrNotRegistered) || errors.Is(err, dbsync.ErrNodeInUse) || errors.Is(err, dbsync.ErrSchemaMismatch) ||
		errors.Is(err, dbsync.ErrProtocolVersion) || errors.Is(err, dbsync.ErrRepairNeeded) || errors.Is(err, ErrNoWatch)
}

// watched is the outcome of one watch request.
type watched struct {
	behind  bool         // the server holds a version the node lacks, or lacks the node's (below it)
	carried *carriedPull // the answer is the pull (WatchPullTransport)
	after   int64        // the node's version the request was made from
	early   bool         // answered without a new version sooner than the server waits
}

// applyCarried applies a pull the watch request carried, under the
// client's lock, as Pull does.
func (c *Client) applyCarried(ctx context.Context, carried *carriedPull) error {
	if err := c.lock(ctx); err != nil {
		carried.close()
		return err
	}
	defer c.mu.unlock()
	res, err := c.pullCarried(ctx, carried)
	if err == nil && len(res.widened) > 0 {
		_, err = c.pull(ctx) // the backfill of the tables it widened (pullWhole)
	}
	return err
}

// watchOnce makes one watch request from the node's latest version. local
// is true when opts.Changed cut it short (its answer does not matter then).
//
// With *carry and a WatchPullTransport it asks for the pull in the
// answer; a server refusing that as a bad request (one that predates it)
// sets *carry false, and the requests after it do not ask. A request
// naming the node's version with its token (after_token) refused so
// first drops the token instead (Client.noWatchToken).
func (c *Client) watchOnce(ctx context.Context, o *WatchOptions, carry *bool) (res watched, local bool, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "watch"}
	defer func() {
		// A request cut short because the caller stopped the watch (ctx
		// ended) is no failure: it is not reported.
		if !local && ctx.Err() == nil {
			ev.Err = err
			c.emit(ctx, ev, start)
		}
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return res, false, err
	}
	ev.NodeID = node.NodeID
	after, token, err := latestIdentity(ctx, c.db)
	if err != nil {
		return res, false, fmt.Errorf("client: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	carried := false // the stream outlives this call, and wctx with it
	defer func() {
		if !carried {
			cancel()
		}
	}()
	req := &protocol.WatchRequest{After: after, Wait: o.Wait}
	if !c.noWatchToken.Load() {
		req.AfterToken = token
	}
	var resp *protocol.WatchResponse
	var stream io.ReadCloser
	// An answer that does not come within Wait and Stall is given up.
	// (A carried pull is then guarded while it waits for its first
	// bytes: stallGuard.)
	var stalled atomic.Bool
	stall := time.AfterFunc(o.Wait+o.Stall, func() { stalled.Store(true); cancel() })
	defer stall.Stop()
	watch := func() {
		if c.tr.watchPull != nil && *carry {
			req.ChunkSize = c.cfg.ChunkSize
			resp, stream, err = c.tr.WatchPull(wctx, c.call(node), req)
			if errors.Is(err, dbsync.ErrBadRequest) {
				// A server of an earlier release: without the token
				// first, then without the pull.
				if req.AfterToken != "" {
					c.noWatchToken.Store(true)
				} else {
					*carry = false
				}
			}
			return
		}
		resp, err = c.tr.Watch(wctx, c.call(node), req)
		if errors.Is(err, dbsync.ErrBadRequest) && req.AfterToken != "" {
			c.noWatchToken.Store(true)
		}
	}
	if o.Changed == nil {
		watch()
	} else {
		// A signal on Changed cuts the request; one that comes as it
		// ends is not lost either.
		cut, done, stop := false, make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-o.Changed:
				cut = true
				cancel()
			case <-stop:
			case <-wctx.Done():
			}
		}()
		watch()
		close(stop)
		<-done
		if cut && ctx.Err() == nil {
			if stream != nil {
				_ = stream.Close()
			}
			return res, true, nil
		}
	}
	if stalled.Load() && ctx.Err() == nil {
		if stream != nil {
			_ = stream.Close()
		}
		return res, false, fmt.Errorf("%w: watch: no answer within %s (Wait) and %s (Stall)", dbsync.ErrNetwork, o.Wait, o.Stall)
	}
	if err != nil {
		return res, false, err
	}
	stall.Stop()
	if stream != nil {
		// Its reads after the first bytes are the download's to bound
		// (Config.StallTimeout).
		stream = &stallGuard{ReadCloser: stream, cut: cancel, first: o.Stall, firstName: "client.WatchOptions.Stall"}
		ev.VersionID = after
		carried = true
		return watched{behind: true, after: after, carried: &carriedPull{stream: cancelOnClose{stream, cancel},
			req: protocol.PullRequest{LatestVersionID: versionPtr(after), LatestVersionToken: token, ChunkSize: req.ChunkSize}}}, false, nil
	}
	ev.VersionID = resp.LatestVersionID
	// A latest version below the node's: the server lost versions the
	// node holds (its database restored from a backup, or failed over to
	// a standby that lacked them). The node syncs, whose pull or push is
	// refused dbsync.ErrRepairNeeded, which Watch returns: watching on, it
	// would pull from its version once the server's new versions passed
	// it, and never get those numbered at or below it.
	behind := resp.LatestVersionID != after
	early := !behind && time.Since(start) < min(o.MinBackoff, o.Wait/2)
	return watched{behind: behind, after: after, early: early}, false, nil
}

// catchUp syncs when the node has something to push, else only pulls
// (a pull alone spares the push's transaction on the node). A node the
// server's log floor left behind syncs too: Sync resets it, Pull does
// not.
//
// A push refused until the application settles rows of it (a
// *dbsync.UniqueConstraintError, *dbsync.ScopeError or *dbsync.ValueError)
// does not stop the other nodes' versions: the node pulls them, and the
// push is tried again at the next catch-up. The refusal reaches
// Config.OnEvent (the push event) and the log; catchUp fails only when
// the pull does too.
func (c *Client) catchUp(ctx context.Context) error {
	local, err := c.hasLocalChanges(ctx)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if !local {
		if err = c.pullWholeLocked(ctx); !errors.Is(err, dbsync.ErrResetRequired) {
			return err
		}
	}
	_, err = c.Sync(ctx)
	if !waitsForApplication(err) {
		return err
	}
	c.log.WarnContext(ctx, "client: watch: push refused until the application settles its rows; pulling the other nodes' changes",
		slog.String("error", err.Error()))
	if _, perr := c.Pull(ctx); perr != nil {
		return err
	}
	return nil
}

// waitsForApplication reports a refusal only the application can settle
// by changing or giving up rows the error names.
func waitsForApplication(err error) bool {
	var uc *dbsync.UniqueConstraintError
	var se *dbsync.ScopeError
	var ve *dbsync.ValueError
	return errors.As(err, &uc) || errors.As(err, &se) || errors.As(err, &ve)
}

// hasLocalChanges reports whether the node has operations to push, or a
// push whose answer never came.
func (c *Client) hasLocalChanges(ctx context.Context) (bool, error) {
	pending, err := c.db.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Exists(ctx)
	if err != nil || pending {
		return pending, err
	}
	return c.db.NewSelect().Model((*models.PushAttempt)(nil)).Exists(ctx)
}
