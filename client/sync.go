package client

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// SyncResult describes a Sync. [SyncResult.Changed] tells whether it moved
// anything; its String is a one-line summary for people.
type SyncResult struct {
	// Pushes are the pushes that sent operations, in order (a Sync with
	// nothing to push has none).
	Pushes []*PushResult
	// Pulls are the pulls made, in order, also those that found nothing
	// new (a Sync with nothing to push pulls once to check).
	Pulls []*PullResult
	// VersionID is the server version the node holds at the end.
	VersionID int64
	// Reset is set when the server answered reset_required (it trimmed
	// the versions the node held) and the Sync reset the node (Reset),
	// keeping its unpushed changes, before pushing them.
	Reset *ResetResult
}

// Changed reports whether the Sync moved anything: it reset the node, a
// push sent operations, or a pull received versions, backfilled rows or
// settled a push whose answer had been lost (PullResult.Changed). A Sync
// that found nothing to push and nothing new on the server returns false.
func (r *SyncResult) Changed() bool {
	if r.Reset != nil {
		return true
	}
	for _, p := range r.Pushes {
		if p.Operations > 0 {
			return true
		}
	}
	for _, p := range r.Pulls {
		if p.Changed() {
			return true
		}
	}
	return false
}

// String summarizes the Sync on one line, e.g. "pushed 2 operation(s);
// pulled 1 version(s) (conflicts resolved: update_update×1); at version 4",
// or "nothing to push or pull; at version 4".
func (r *SyncResult) String() string {
	if !r.Changed() {
		return fmt.Sprintf("nothing to push or pull; at version %d", r.VersionID)
	}
	var parts []string
	if r.Reset != nil {
		parts = append(parts, fmt.Sprintf("reset to version %d (%d row(s) pending before, %d to push after)%s", r.Reset.VersionID, r.Reset.Pending, r.Reset.Kept, conflictText(r.Reset.Conflicts)))
	}
	ops := 0
	for _, p := range r.Pushes {
		ops += p.Operations
	}
	if ops > 0 {
		s := fmt.Sprintf("pushed %d operation(s)", ops)
		if len(r.Pushes) > 1 {
			s += fmt.Sprintf(" in %d pushes", len(r.Pushes))
		}
		parts = append(parts, s)
	}
	versions := 0
	var backfilled int64
	conflicts := map[string]int{}
	for _, p := range r.Pulls {
		versions += p.Versions
		backfilled += p.Backfilled
		for k, n := range p.Conflicts {
			conflicts[k] += n
		}
	}
	if versions > 0 {
		parts = append(parts, fmt.Sprintf("pulled %d version(s)%s", versions, conflictText(conflicts)))
	}
	if backfilled > 0 {
		parts = append(parts, fmt.Sprintf("backfilled %d row(s)", backfilled))
	}
	parts = append(parts, fmt.Sprintf("at version %d", r.VersionID))
	return strings.Join(parts, "; ")
}

// conflictText is " (conflicts resolved: kind×n …)", or "" for none.
func conflictText(conflicts map[string]int) string {
	if len(conflicts) == 0 {
		return ""
	}
	kinds := make([]string, 0, len(conflicts))
	for k, n := range conflicts {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(kinds)
	return " (conflicts resolved: " + strings.Join(kinds, " ") + ")"
}

// Sync brings the node and the server level: it pushes the node's
// changes; when the server rebased the push on versions the node lacks
// (PushResult.Rebased), it pulls them once; when the server refused the
// push (another node changed one of its rows since the node's version, or
// the server is fast-forward only), it pulls and merges and pushes again,
// with at most Config.MaxSyncRounds pulls. With nothing to push it pulls
// once. When the server answers reset_required (it trimmed the versions
// the node holds), Sync resets the node once (Reset: the server's rows,
// merged with the node's unpushed changes) and pushes what remains. It
// stops at the first other error. When the node's schema gained
// columns or tables since its latest pull (its application migrated), it
// first pulls their backfill (README "Schema changes"), or resets when
// the server trimmed the versions the node holds (the reset brings the
// new columns and tables with every row). A push refused out of the
// node's scope (*dbsync.ScopeError) is followed by a pull, and the error
// names the rows both refuse (scopeRefused), by the keys the node holds
// them under after that pull; when that pull moved every row the refusal
// names (inserts over keys other users' rows took meanwhile, K1), Sync
// pushes again instead, as after pull_needed. With an error it returns what
// it did before the error, VersionID the version the node then holds (nil
// when ctx ended before it started), so its String may say "nothing to
// push or pull" while changes wait.
func (c *Client) Sync(ctx context.Context) (result *SyncResult, err error) {
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	res := &SyncResult{}
	defer func() {
		// A Sync that failed partway: the version the node holds now.
		if err != nil && result != nil {
			if v, verr := latestVersion(context.WithoutCancel(ctx), c.db); verr == nil {
				result.VersionID = v
			}
		}
	}()
	pulls := 0
	if pl, err := c.backfillFirst(ctx); errors.Is(err, dbsync.ErrResetRequired) {
		// The server trimmed the versions the node holds: the reset
		// brings every row with the columns the node gained, and
		// records its schema.
		if err := c.resetOnce(ctx, res, err); err != nil {
			return res, err
		}
	} else if err != nil {
		return res, err
	} else if pl != nil {
		pulls++
		res.Pulls = append(res.Pulls, pl)
		res.VersionID = pl.VersionID
	}
	// Every iteration pulls, returns, or settles the push attempt (a
	// duplicate or a refused resend happens once per attempt): it ends.
	for {
		resend, err := c.db.NewSelect().Model((*models.PushAttempt)(nil)).Exists(ctx)
		if err != nil {
			return res, fmt.Errorf("client: read push attempt: %w", err)
		}
		pr, err := c.push(ctx)
		var uc *dbsync.UniqueConstraintError
		switch {
		case err == nil && pr.Duplicate:
			res.Pushes = append(res.Pushes, pr)
			continue // the settled push may not have held everything
		case errors.Is(err, dbsync.ErrResetRequired) && res.Reset == nil:
			// The server trimmed the versions the node holds: reset,
			// keeping the pending changes, and push them.
			if err := c.resetOnce(ctx, res, err); err != nil {
				return res, err
			}
			continue
		case err == nil && !pr.Empty && pr.Rebased:
			// Applied on top of versions the node lacks: one pull brings
			// them (its own version's operations left out) and ends.
			res.Pushes = append(res.Pushes, pr)
			pl, err := c.pullWhole(ctx)
			if err != nil {
				return res, err
			}
			res.Pulls = append(res.Pulls, pl)
			res.VersionID = pl.VersionID
			return res, nil
		case err == nil && !pr.Empty:
			res.Pushes = append(res.Pushes, pr)
			res.VersionID = pr.VersionID
			return res, nil
		case err == nil && pulls > 0:
			return res, nil
		case resend && !errors.Is(err, dbsync.ErrPullNeeded) && (errors.Is(err, dbsync.ErrPushRejected) || errors.As(err, &uc)):
			// The server refused a resent push for good and push dropped
			// the attempt: a pull whose answer was lost had it abandoned,
			// or its operations, recorded before the node's later changes,
			// no longer fit the rows as they are now (a row moved under a
			// parent created since). Push everything again under a new
			// push id; a refusal of that one is final.
			continue
		case err == nil || errors.Is(err, dbsync.ErrPullNeeded):
			if pulls == c.cfg.MaxSyncRounds {
				// The last refusal says why: a server answers pull_needed
				// for a refusal while its application's direct writes
				// commit (merge.md V6), one that may stand for good.
				why := ""
				if err != nil {
					why = "; last refusal: " + err.Error()
				}
				return res, fmt.Errorf("%w: still behind the server after %d pulls (other nodes push faster, or the server's application writes meanwhile)%s", dbsync.ErrPullNeeded, pulls, why)
			}
			pl, err := c.pullWhole(ctx)
			if errors.Is(err, dbsync.ErrResetRequired) && res.Reset == nil {
				if err := c.resetOnce(ctx, res, err); err != nil {
					return res, err
				}
				continue
			}
			if err != nil {
				return res, err
			}
			pulls++
			res.Pulls = append(res.Pulls, pl)
			res.VersionID = pl.VersionID
		default:
			if se := (*dbsync.ScopeError)(nil); errors.As(err, &se) {
				again, err := c.scopeRefused(ctx, res, se, err)
				if again && pulls < c.cfg.MaxSyncRounds {
					// Every row refused was an insert the pull moved to a
					// fresh key (K1): its key was another user's row, taken
					// since the node's pull (nodes renumbering at once).
					// Not the application's to settle: push again.
					pulls++
					continue
				}
				return res, err
			}
			return res, err
		}
	}
}

// scopeRefused completes err, the server's refusal of a push out of the
// node's scope (se), with a pull. The server names the rows of the check
// that refused the push, only those of its check before the writes when
// the push is behind; a pull names every pending row of the node that
// left the scope (merge.md S2): the refusal names both, so that one
// DiscardPending settles them. A pull that succeeds is kept (the other
// nodes' versions arrive while the node's changes wait); another failure
// of it leaves err as it is. again reports that the pull moved every row
// the push named to a fresh key (K1): inserts over keys other users'
// rows took since the node's pull, which the push should try again.
func (c *Client) scopeRefused(ctx context.Context, res *SyncResult, se *dbsync.ScopeError, err error) (again bool, _ error) {
	pl, perr := c.pull(ctx)
	var more *dbsync.ScopeError
	switch {
	case perr == nil:
		res.Pulls = append(res.Pulls, pl)
		res.VersionID = pl.VersionID
		again = len(se.Entries) > 0 && allMoved(se.Entries, pl.Moved)
		// The push named the rows by the keys it sent; the pull may have
		// moved the node's unpushed inserts to other keys (K1): the
		// refusal names them as the node holds them now, so that
		// DiscardPending finds them.
		// A new error, not se changed in place: the push's event
		// (Config.OnEvent) carried se already, and the application may
		// be reading it.
		if moved := renumbered(se.Entries, pl.Moved); !slices.Equal(moved, se.Entries) {
			err = withScope(err, se, &dbsync.ScopeError{Entries: moved})
		}
	case errors.As(perr, &more):
		entries := append(slices.Clone(se.Entries), more.Entries...)
		slices.SortFunc(entries, func(a, b protocol.ScopeEntry) int {
			return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.PK, b.PK))
		})
		return false, fmt.Errorf("client: the server refused the push, and the pull refused to drop the node's unpushed changes "+
			"to rows that left its scope: %w", &dbsync.ScopeError{Entries: slices.Compact(entries)})
	}
	return again, err
}

// allMoved reports whether moves (a pull's K1 renumbering) moved every
// row entries name away from the key it names.
func allMoved(entries []protocol.ScopeEntry, moves []merge.Move) bool {
	type key struct{ table, pk string }
	moved := make(map[key]bool, len(moves))
	for _, mv := range moves {
		moved[key{mv.Table, strconv.FormatInt(mv.From, 10)}] = true
	}
	for _, en := range entries {
		if !moved[key{en.Table, en.PK}] {
			return false
		}
	}
	return true
}

// Pending returns the node's unpushed operations after compression (at
// most one per row), oldest first (python-sync-db's unsynched_objects).
// The operations of an unanswered push stay as they were sent. Pending
// only reads: the log is compressed when it is pushed.
func (c *Client) Pending(ctx context.Context) ([]protocol.Operation, error) {
	ops, err := c.pendingOps(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: pending: %w", err)
	}
	return oplog.ToWire(c.registry(), ops), nil
}

// pendingOps returns the node's unpushed operations as Pending: those of
// an unanswered push as they were sent (merge.md X1), then the others
// compressed (a row inserted and deleted since is none).
func (c *Client) pendingOps(ctx context.Context) ([]models.Operation, error) {
	var ops []models.Operation
	// A read-only transaction: one consistent view, and no write lock
	// (SQLite's immediate mode is not used for it).
	err := c.db.RunInTx(ctx, &sql.TxOptions{ReadOnly: true}, func(ctx context.Context, tx bun.Tx) error {
		var err error
		ops, err = c.pendingOpsIn(ctx, tx)
		return err
	})
	return ops, err
}

// pendingOpsIn is pendingOps read in tx.
func (c *Client) pendingOpsIn(ctx context.Context, tx bun.IDB) ([]models.Operation, error) {
	var ops []models.Operation
	after := int64(math.MinInt64)
	var attempt models.PushAttempt
	switch err := tx.NewSelect().Model(&attempt).Limit(1).Scan(ctx); {
	case err == nil:
		after = attempt.MaxOrder
		if ops, err = oplog.PendingUpTo(ctx, tx, after); err != nil {
			return nil, err
		}
	case !isNoRows(err):
		return nil, err
	}
	rest, err := oplog.Compressed(ctx, tx, c.registry(), after)
	return append(ops, rest...), err
}

// Version returns the node's version: the newest server version up to
// which it holds every version, 0 before its first push or pull. Pushes
// are based on it and pulls start after it. A push the server rebased
// (PushResult.Rebased) created a newer version the node holds, but the
// versions below that one come with the next pull, and so does the move.
func (c *Client) Version(ctx context.Context) (int64, error) {
	v, err := latestVersion(ctx, c.db)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	return v, nil
}

// IsSynced reports whether a model row (pointer to a tracked model, or
// the struct itself) has no unpushed change (python-sync-db's
// is_synched). A model the node does not track is dbsync.ErrUnknownTable,
// as for QueryAll and Query; a nil pointer or a slice is
// dbsync.ErrBadRequest.
func (c *Client) IsSynced(ctx context.Context, model any) (bool, error) {
	t := c.registry().TableOf(model)
	if t == nil {
		return false, fmt.Errorf("%w: %T is not a tracked model", dbsync.ErrUnknownTable, model)
	}
	row := reflect.Indirect(reflect.ValueOf(model))
	if row.Kind() != reflect.Struct {
		return false, fmt.Errorf("%w: IsSynced takes one row of %s (a pointer to it or the struct), not %T", dbsync.ErrBadRequest, t.Name, model)
	}
	key := t.Codec().KeyOf(row)
	n, err := c.db.NewSelect().Model((*models.Operation)(nil)).
		Where("version_id IS NULL AND content_type_id = ? AND row_id = ?", t.ContentTypeID, key).Count(ctx)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

// scopeReplaced is an error whose *dbsync.ScopeError was replaced by
// another (the same refusal naming rows by other keys), leaving the
// error it was found in, which others may hold, as it was.
type scopeReplaced struct {
	err     error
	old, se *dbsync.ScopeError
}

// withScope returns err with se in place of old, a *dbsync.ScopeError
// err wraps: errors.As finds se, errors.Is the sentinels err wraps.
func withScope(err error, old, se *dbsync.ScopeError) error {
	return &scopeReplaced{err: err, old: old, se: se}
}

func (e *scopeReplaced) Error() string {
	return strings.Replace(e.err.Error(), e.old.Error(), e.se.Error(), 1)
}

func (e *scopeReplaced) Unwrap() []error { return []error{e.se, e.err} }
