package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// A pull, step by step (one file each):
//
//	pull.go           the request: the node's version, its unanswered push,
//	                  the rows it deleted (pullRequest)
//	download.go       the answer, downloaded (in memory, or spooled to a
//	                  file when large), then read line by line
//	pull_apply.go     the transaction, line by line (applyPull): the header
//	                  settles the push; each chunk is decoded, merged, written
//	pull_renumber.go  K1: the node's unpushed inserts move out of the way
//	pull_merge.go     what the merge reads: the node's pending changes, each
//	                  chunk decoded, the node's rows
//	pull_write.go     a merge plan written to the tables and the log

// PullResult describes a pull.
type PullResult struct {
	// VersionID is the server version the node now holds.
	VersionID int64
	// Versions, Operations and Rows count what was received.
	Versions   int
	Operations int64
	Rows       int64
	// Conflicts counts the conflicts resolved, by kind (merge.Kind*).
	Conflicts map[string]int
	// PushApplied is set when the pull settled a push whose answer had been
	// lost: true if the server had applied it.
	PushApplied *bool
	// Bytes is the size of the response.
	Bytes int64
	// ScopeIn and ScopeOut count the rows that entered and left the
	// node's scope (partial sync: server.Scopes), written and deleted
	// without being logged.
	ScopeIn, ScopeOut int64
	// Backfilled counts the rows of a backfill (README "Schema changes"):
	// the rows whose new columns, or of new tables, the node wrote from
	// the server's values because its schema gained them, or of tables
	// it now holds whole (pulled, push-only before; or no longer held to
	// a scope), without logging.
	Backfilled int64
	// Moved lists the keys the pull gave the node's unpushed inserts in
	// tables with integer keys (merge.md K1: an insert whose key the
	// server had used moves above every key used), in order, with the
	// rows referencing them: the row the application inserted under
	// From is now at To, and From may name another node's row the pull
	// brought. A key the application kept from an insert
	// (LastInsertId, a model's ID) is stale after such a move: map it
	// through Moved, or read it again by another column. Config.OnMoved
	// receives the same, also from Watch's pulls.
	Moved []merge.Move

	// widened names the tables the pull recorded not pulled
	// (recordScoped): the next pull backfills them. deferred names those
	// whose backfill the server refused (it does not pull them yet): they
	// stay recorded not pulled.
	widened, deferred []string
}

// add adds next, a pull right after r, to r.
func (r *PullResult) add(next *PullResult) {
	r.VersionID = next.VersionID
	r.Versions += next.Versions
	r.Operations += next.Operations
	r.Rows += next.Rows
	for k, n := range next.Conflicts {
		if r.Conflicts == nil {
			r.Conflicts = map[string]int{}
		}
		r.Conflicts[k] += n
	}
	if r.PushApplied == nil {
		r.PushApplied = next.PushApplied
	}
	r.Bytes += next.Bytes
	r.ScopeIn += next.ScopeIn
	r.ScopeOut += next.ScopeOut
	r.Backfilled += next.Backfilled
	r.widened = next.widened
	r.Moved = append(r.Moved, next.Moved...)
}

// Changed reports whether the pull received versions, backfilled rows or
// settled a push whose answer had been lost.
func (r *PullResult) Changed() bool {
	return r.Versions > 0 || r.Backfilled > 0 || r.PushApplied != nil
}

// String summarizes the pull on one line, e.g. "pulled 1 version(s), 3
// operation(s); at version 4".
func (r *PullResult) String() string {
	s := "nothing to pull"
	if r.Versions > 0 {
		s = fmt.Sprintf("pulled %d version(s), %d operation(s)%s", r.Versions, r.Operations, conflictText(r.Conflicts))
	}
	if r.Backfilled > 0 {
		b := fmt.Sprintf("backfilled %d row(s)", r.Backfilled)
		if r.Versions > 0 {
			s += "; " + b
		} else {
			s = b
		}
	}
	if r.PushApplied != nil {
		s += fmt.Sprintf("; the unanswered push was applied: %v", *r.PushApplied)
	}
	return fmt.Sprintf("%s; at version %d", s, r.VersionID)
}

// Pull fetches the server's versions newer than the node's and merges them
// into the local database (merge.md), in one transaction: the local
// database moves to the new version entirely or not at all. The response is
// downloaded into memory, or beyond 256 KiB into a temporary file, so
// memory stays bounded. A small one is applied once downloaded; a larger
// one is applied as it downloads. Once the transaction keeps the node's
// writers out (on PostgreSQL from when it holds the merge lock: its wait
// for the application's transactions counts for nothing), it waits on the
// network at most as long as it has worked since, plus 250 ms: past that
// it rolls back, and the response is applied again once downloaded (the
// network is slower than the apply).
//
// When the node's changes collide with the server's on unique values in a
// way the merge cannot settle, Pull returns a *dbsync.UniqueConstraintError
// naming the node's rows to change; nothing is applied. When the server
// deleted a row of a pull-only table that the node's unpushed rows
// depend on (merge.md D1: no push can re-create it), Pull returns
// dbsync.ErrPendingChanges wrapping a *dbsync.ScopeError naming those
// rows; nothing is applied: point them at other rows, or give them up
// with DiscardPending, and pull again. A node below the
// server's log floor (its log trimmed past the node's version, or a new
// node once the log was ever trimmed) gets dbsync.ErrResetRequired: Pull
// does not reset; Sync does (Client.Reset). A pull whose server no
// longer holds the node to part of tables without sending the rows of
// them the node lacks (a server that dropped its scopes) records them:
// the next pull asks for them whole (a backfill), and Sync pulls again
// at once.
func (c *Client) Pull(ctx context.Context) (*PullResult, error) {
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	return c.pull(ctx)
}

// pull asks (pullRequest), downloads the answer (download), then applies it
// in one transaction (applyPull).
func (c *Client) pull(ctx context.Context) (res *PullResult, err error) {
	return c.pullCarried(ctx, nil)
}

// pullWhole is pull, followed at once by another when the first recorded
// widened tables (the server no longer holds the node to part of them,
// and did not send the rows of them the node lacks: it has no scopes),
// which backfills them whole: Sync's pulls, so that the rows arrive in
// the Sync that learned of the change.
func (c *Client) pullWhole(ctx context.Context) (*PullResult, error) {
	res, err := c.pull(ctx)
	if err != nil || len(res.widened) == 0 {
		return res, err
	}
	more, err := c.pull(ctx)
	if err != nil {
		return nil, err
	}
	res.add(more)
	return res, nil
}

// errDeletedSince fails a pull that left rows referencing missing ones
// when its request did not name every pending delete of a parent row: the
// application deleted rows after the request, and the answer may lack
// the rows the merge would restore (merge.md D2). It wraps the foreign key
// error too.
var errDeletedSince = errors.New("client: pull: the application deleted rows while the pull was answered")

// maxDeletedSinceRetries bounds the pulls asked again for errDeletedSince.
const maxDeletedSinceRetries = 3

// pullCarried is pull, using the answer carried by a watch request
// (watch.go) instead of asking when the node's request is the one it
// answers; it closes carried's stream. A pull failed for deletes made
// after its request (errDeletedSince) asks again, a few times.
func (c *Client) pullCarried(ctx context.Context, carried *carriedPull) (*PullResult, error) {
	res, err := c.pullOnce(ctx, carried)
	for i := 0; i < maxDeletedSinceRetries && errors.Is(err, errDeletedSince); i++ {
		res, err = c.pullOnce(ctx, nil)
	}
	if errors.Is(err, errDeletedSince) {
		// Still the foreign key error of a pull the node's rows disagree
		// with (pullOnce), with what to do: the deletes are all named in
		// the next request once the application stops.
		return nil, fmt.Errorf("%w (at each of %d requests: pull again once the application stops deleting those rows; "+
			"if the pull still fails, Repair gives the node the server's rows)", err, maxDeletedSinceRetries+1)
	}
	return res, err
}

func (c *Client) pullOnce(ctx context.Context, carried *carriedPull) (res *PullResult, err error) {
	defer carried.close()
	start := time.Now()
	ev := dbsync.Event{Op: "pull"}
	defer func() {
		var untracked *store.UntrackedParentError
		if errors.As(err, &untracked) {
			err = fmt.Errorf("%w (create those rows on the node, as the server has them, and pull again)", err)
		} else if errors.Is(err, dbsync.ErrForeignKey) && !errors.Is(err, errDeletedSince) {
			// Rows the pull would leave referencing missing ones: the
			// node's rows and the server's disagree beyond what a merge
			// settles (a delete the server applied unlogged, rows changed
			// behind dbsync's back).
			err = fmt.Errorf("%w (the node's rows and the server's disagree: Repair gives the node the server's rows)", err)
		}
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Operations, ev.Rows, ev.Bytes, ev.Conflicts = res.VersionID, res.Operations, res.Rows, res.Bytes, res.Conflicts
		}
		c.emit(ctx, ev, start)
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	req, attempt, err := c.pullRequest(ctx)
	if err != nil {
		return nil, err
	}
	// The tables the node held in part before the pull (requestPull may
	// ask again listing every pulled table).
	prev := c.scoped
	backfill, err := c.backfill(ctx)
	if err != nil {
		return nil, err
	}
	if backfill != nil {
		req.Backfill = backfill.text
	}
	stream := carried.take(req)
	var deferred []string
	if stream == nil {
		stream, err = c.requestPull(ctx, node, req)
		if errors.Is(err, dbsync.ErrBadRequest) && !errors.Is(err, dbsync.ErrHeldKeysNeeded) && backfill != nil && len(backfill.widened) > 0 {
			// A server that does not pull a table the node's release
			// pulls now (not upgraded yet) refuses its backfill: pull
			// without it, the table still recorded for a later pull.
			c.log.WarnContext(ctx, "client: pull: the server refused the backfill of tables the node now pulls; pulling without it (upgrade the server)",
				slog.String("error", err.Error()))
			if backfill, deferred, err = c.withoutWidened(backfill); err != nil {
				return nil, err
			}
			req.Backfill = ""
			if backfill != nil {
				req.Backfill = backfill.text
			}
			stream, err = c.requestPull(ctx, node, req)
		}
	}
	if err != nil {
		return nil, err
	}
	size, err := c.downloadApply(ctx, stream, "pull", func(in *answer) error {
		res = &PullResult{Conflicts: map[string]int{}, deferred: deferred}
		return dialect.ApplyTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
			if err := c.owned(ctx, tx); err != nil {
				return err
			}
			return c.applyPull(ctx, tx, node, attempt, backfill, prev, in, res)
		})
	})
	if err != nil {
		// Nothing applied: the node holds the tables it held in part
		// before (applyPull took the header's), for the next pull to
		// list, or to backfill when the server no longer scopes them.
		c.scoped = prev
	}
	err = foreignKey(err)
	if errors.Is(err, dbsync.ErrForeignKey) && req.Deleted != nil {
		// Rows left referencing missing ones: the application may have
		// deleted a parent after the request, which did not name it.
		if now, derr := c.pendingDeletes(ctx, c.db); derr == nil && !coversDeletes(req.Deleted, now) {
			return nil, fmt.Errorf("%w: %w", errDeletedSince, err)
		}
	}
	if err != nil {
		return nil, err
	}
	res.Bytes = size
	// Tables the pull widened or deferred are recorded not pulled:
	// backfilled next.
	c.schemaRecorded = len(res.widened) == 0 && len(res.deferred) == 0
	c.progress(dbsync.Progress{Op: "pull", Phase: "done", Bytes: size, Operations: res.Operations, Rows: res.Rows})
	c.log.InfoContext(ctx, "client: pulled", slog.Int64("version", res.VersionID), slog.Int64("operations", res.Operations), slog.Any("conflicts", res.Conflicts))
	c.moved(ctx, res.Moved)
	return res, nil
}

// requestPull sends req, and returns the answer's stream: without the
// keys the node holds when a server without scopes finds the request too
// large, with them (of every pulled table) when the server holds nodes
// to scopes and the request lacks some it needs.
func (c *Client) requestPull(ctx context.Context, node *models.Node, req *protocol.PullRequest) (io.ReadCloser, error) {
	stream, err := c.tr.Pull(ctx, c.call(node), req)
	if errors.Is(err, dbsync.ErrTooLarge) && req.Held != nil {
		// Keys held for a server that had scopes at the last pull: one
		// without scopes now bounds pull bodies to 1 MiB. Ask without
		// them; a server with scopes asks for them again (below).
		req.Held = nil
		stream, err = c.tr.Pull(ctx, c.call(node), req)
	}
	if errors.Is(err, dbsync.ErrHeldKeysNeeded) && !c.listsPulled(req.Held) {
		// The server holds nodes to scopes, or to more tables than its
		// last header named (server.Config.Scopes changed): ask again at
		// once with the keys of every pulled table, so that this pull
		// already moves out the rows the node may no longer read; the
		// answer's header names the scoped ones.
		c.scoped = c.pulledTables()
		if req.Held, err = c.heldKeys(ctx, c.db, c.scoped); err != nil {
			return nil, err
		}
		stream, err = c.tr.Pull(ctx, c.call(node), req)
	}
	if errors.Is(err, dbsync.ErrTooLarge) && req.Held != nil {
		n := 0
		for _, keys := range req.Held {
			n += len(keys)
		}
		return nil, fmt.Errorf("client: pull: the keys of the %d rows the node holds in scoped tables exceed the server's bound "+
			"on a pull body (handlers.Config.MaxPullBytes): %w", n, err)
	}
	return stream, err
}

// listsPulled reports whether held lists every pulled table: the most a
// pull asked again for dbsync.ErrHeldKeysNeeded can list.
func (c *Client) listsPulled(held map[string][]string) bool {
	if held == nil {
		return false
	}
	for _, name := range c.pulledTables() {
		if _, ok := held[name]; !ok {
			return false
		}
	}
	return true
}

// pullRequest asks for the versions after the node's newest, and about the
// push whose answer was lost, if any: that attempt is returned too, for the
// pull to settle.
func (c *Client) pullRequest(ctx context.Context) (*protocol.PullRequest, *models.PushAttempt, error) {
	latest, token, err := latestIdentity(ctx, c.db)
	if err != nil {
		return nil, nil, err
	}
	var attempt *models.PushAttempt
	var a models.PushAttempt
	switch err := c.db.NewSelect().Model(&a).Limit(1).Scan(ctx); {
	case err == nil:
		attempt = &a
	case !isNoRows(err):
		return nil, nil, fmt.Errorf("client: read push attempt: %w", err)
	}
	deleted, err := c.pendingDeletes(ctx, c.db)
	if err != nil {
		return nil, nil, err
	}
	req := &protocol.PullRequest{LatestVersionID: versionPtr(latest), LatestVersionToken: token, ChunkSize: c.cfg.ChunkSize,
		Deleted: deleted, HeldRetry: true}
	if err := c.loadScoped(ctx); err != nil {
		return nil, nil, err
	}
	if c.scoped != nil {
		if req.Held, err = c.heldKeys(ctx, c.db, c.scoped); err != nil {
			return nil, nil, err
		}
	}
	if attempt != nil {
		req.PushID = attempt.PushID
	}
	return req, attempt, nil
}

// maxDeletedInRequest bounds the keys a pull request lists, and
// maxDeletedBytes their JSON; beyond either the request asks for every
// referenced row. The bytes bound keeps a pull to a server without scopes
// (which needs no held keys) within its 1 MiB body bound
// (handlers.Config.MaxBodyBytes), a backfill's schema (up to 32 KiB)
// included: text keys may be long.
const (
	maxDeletedInRequest = 10000
	maxDeletedBytes     = 512 << 10
)

// pendingDeletes lists the rows the node deleted and has not pushed, in
// tables other tables reference: the only referenced rows a pull needs
// (merge.md D2). nil (ask for all) when there are too many to list.
func (c *Client) pendingDeletes(ctx context.Context, db bun.IDB) (map[string][]string, error) {
	var cts []int64
	for _, t := range c.reg.Tables() {
		if len(c.reg.Children(t.Name)) > 0 {
			cts = append(cts, t.ContentTypeID)
		}
	}
	out := map[string][]string{}
	if len(cts) == 0 {
		return out, nil
	}
	rows, err := db.QueryContext(ctx, "SELECT content_type_id, row_id FROM sync_operations WHERE version_id IS NULL AND command = 'd' AND content_type_id IN (?) LIMIT ?",
		bun.List(cts), maxDeletedInRequest+1)
	if err != nil {
		return nil, fmt.Errorf("client: read pending deletes: %w", err)
	}
	defer rows.Close()
	n, size := 0, 0
	for rows.Next() {
		var ct int64
		var key string
		if err := rows.Scan(&ct, &key); err != nil {
			return nil, err
		}
		b, err := json.Marshal(key)
		if err != nil {
			return nil, fmt.Errorf("client: pending delete key: %w", err)
		}
		if n, size = n+1, size+len(b)+1; n > maxDeletedInRequest || size > maxDeletedBytes {
			return nil, nil
		}
		t := c.reg.ByContentType(ct)
		out[t.Name] = append(out[t.Name], key)
	}
	return out, rows.Err()
}

// coversDeletes reports whether the deletes a pull request named (asked)
// include every pending delete now (pendingDeletes); nil now, too many to
// list, is not covered.
func coversDeletes(asked, now map[string][]string) bool {
	if now == nil {
		return false
	}
	for table, keys := range now {
		set := make(map[string]bool, len(asked[table]))
		for _, k := range asked[table] {
			set[k] = true
		}
		for _, k := range keys {
			if !set[k] {
				return false
			}
		}
	}
	return true
}
