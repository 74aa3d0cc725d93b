package server

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// A push names the version it is based on: the newest version up to which
// its node holds every version. Python-sync-db accepted a push only when
// that base was the server's latest (fast-forward only), so every writer
// followed every other one, pulling before each push. Push accepts a push
// based on an older version too, and applies it on top of the versions
// since (a rebase), when none of them changed a row the push writes or
// deletes: the node's changes meet nothing it has not seen. A version the
// pushing node created itself does not count (the node holds its rows).
// Config.FastForwardOnly restores python-sync-db's rule.
//
// The check reads the log's (table, row) index over the versions after
// the base, one query per table and batch of keys. Most of it runs before
// the version lock (precheck): a conflict found there is final, since a
// version never goes away, and is refused without waiting for the lock.
// Under the lock only the versions committed since are read (checkBase).
// References and unique values are checked against the server's rows as
// they are (apply, VerifyReferences), in the same transaction; a rebased
// push they refuse is answered pull_needed, as a fast-forward-only server
// would have answered it, since the rows at fault may be among those
// changed after the base: the node pulls them, merges by the D and U rules
// (merge.md), and pushes again.

// maxNamedRows bounds the rows a refusal names.
const maxNamedRows = 5

// precheck refuses, without the version lock, a push that is behind and
// can never be applied as it is (fast-forward only, a rebase floor, or a
// row changed after its base by another node). It returns the latest
// version whose log it read (0: none), from which checkBase goes on
// under the lock. A push whose id the server has seen is left to the
// locked path, which answers duplicate or abandoned.
func (s *Server) precheck(ctx context.Context, node int64, req *protocol.PushRequest, plan *pushPlan) (int64, error) {
	if plan == nil || len(req.Operations) == 0 {
		return 0, nil
	}
	var base int64
	if req.LatestVersionID != nil {
		base = *req.LatestVersionID
	}
	latest, stored, err := latestAndToken(ctx, s.db, base, req.LatestVersionToken)
	if err != nil {
		return 0, err
	}
	if base >= latest {
		return 0, nil // fast-forward, or ahead: decided under the lock
	}
	// A base the server lost and numbered anew is decided under the lock
	// too (repair_needed), not refused pull_needed here for rows it reads
	// after the lost version.
	if sameVersion(base, req.LatestVersionToken, stored, false) != nil {
		return 0, nil
	}
	// Below the log floor the versions after base are trimmed: the locked
	// path answers reset_required (or duplicate), not this check.
	floor, err := logFloor(ctx, s.db)
	if err != nil {
		return 0, err
	}
	if floor > 0 && base < floor {
		return 0, nil
	}
	// A node older than its own pushes (restoredNode), before a refusal
	// that would send it to pull.
	if own := req.OwnVersionID; own != nil {
		known := max(base, *own)
		var unknown *int64
		if err := s.db.NewRaw("SELECT MAX(version_id) FROM sync_versions WHERE node_id = ? AND version_id > ?", node, known).Scan(ctx, &unknown); err != nil {
			return 0, fmt.Errorf("read the node's versions: %w", err)
		}
		if unknown != nil {
			if p, err := s.lookupPush(ctx, node, req.PushID); err != nil || p != nil {
				return 0, err // a copy of an applied push: the locked path answers
			}
			return 0, restoredNode(*unknown, known)
		}
	}
	refusal := s.rebaseCheck(ctx, s.db, node, base, latest, 0, nil, plan)
	switch {
	case refusal == nil:
		return latest, nil
	case !errors.Is(refusal, dbsync.ErrPullNeeded):
		return 0, refusal
	}
	// Refused for good, unless the push was applied already (a copy of
	// it): that lookup comes after the check, so an id not applied now
	// never will be (its conflict stays).
	p, err := s.lookupPush(ctx, node, req.PushID)
	if err != nil {
		return 0, err
	}
	if p != nil {
		return 0, nil
	}
	return 0, s.scopeFirst(ctx, nil, node, plan, refusal)
}

// scopeFirst returns, for a push refused because rows of it changed after
// its base (dbsync.ErrPullNeeded naming them), its scope refusal if it has
// one: else the answer would tell a node whether rows outside its scope
// changed. tx is the push's transaction, or nil to read in one of its own.
func (s *Server) scopeFirst(ctx context.Context, tx bun.IDB, node int64, plan *pushPlan, refusal error) error {
	if s.scopes == nil || plan == nil || !errors.Is(refusal, dbsync.ErrPullNeeded) {
		return refusal
	}
	check := func(ctx context.Context, tx bun.Tx) error {
		_, err := s.guardScope(ctx, tx, node, plan)
		return err
	}
	var err error
	if t, ok := tx.(bun.Tx); ok {
		err = check(ctx, t)
	} else {
		err = dialect.RunInTx(ctx, s.db, nil, check)
	}
	if se := (*dbsync.ScopeError)(nil); errors.As(err, &se) {
		return err
	}
	return refusal
}

// checkBase decides, under the version lock, whether a push based on base
// (nil: none) is applied: fast-forward (base is the latest version), or
// rebased on the versions after base (rebaseCheck over the versions after
// checked, those precheck did not read). It returns the version the push
// creates and whether the push is rebased. own is the node's greatest
// settled version of its own (PushRequest.OwnVersionID; nil: not known):
// a version of the node's own after it and after base means the node's
// database is older than its pushes (restoredNode).
func (s *Server) checkBase(ctx context.Context, tx bun.Tx, node int64, base, own *int64, token string, checked int64, plan *pushPlan) (version int64, rebased bool, err error) {
	var claimed, last int64
	if base != nil {
		claimed = *base
	}
	known := int64(math.MaxInt64) // not known: nothing is after it
	if own != nil {
		known = max(claimed, *own)
	}
	// One round trip for the latest version, the node's rebase floor, the
	// log floor, the base's token and the node's own version after known:
	// the lock is held until commit, every statement under it counts.
	var latest, floor, trimmed, unknown *int64
	var stored *string
	if err := tx.NewRaw("SELECT (SELECT MAX(version_id) FROM sync_versions), (SELECT version_id FROM sync_rebase_floors WHERE node_id = ?), (SELECT version_id FROM sync_log_floor WHERE id = 1), "+tokenOf+
		", (SELECT MAX(version_id) FROM sync_versions WHERE node_id = ? AND version_id > ?)", node, claimed, node, known).
		Scan(ctx, &latest, &floor, &trimmed, &stored, &unknown); err != nil {
		return 0, false, fmt.Errorf("latest version: %w", err)
	}
	if latest != nil {
		last = *latest
	}
	if floor == nil {
		floor = new(int64) // the node has none: read, not to be read again
	}
	if claimed > last {
		return 0, false, aheadOfServer(claimed, last, false)
	}
	// The log after a base below the log floor may be gone (Trim raises
	// the floor under this lock): the rebase check cannot read it.
	if trimmed != nil && claimed < *trimmed {
		return 0, false, resetRequired(claimed, *trimmed)
	}
	// A base the server lost and numbered anew (version identity).
	if err := sameVersion(claimed, token, stored, false); err != nil {
		return 0, false, err
	}
	if unknown != nil {
		return 0, false, restoredNode(*unknown, known)
	}
	if claimed < last {
		if err := s.rebaseCheck(ctx, tx, node, claimed, last, checked, floor, plan); err != nil {
			return 0, false, err
		}
	}
	return last + 1, claimed < last, nil
}

// rebaseCheck refuses (dbsync.ErrPullNeeded) a push of node based on base,
// older than latest, that cannot be rebased: the server is fast-forward
// only, the node gave up on a push since (its rebase floor; nil: read it),
// or another node's version after max(base, checked) changed one of its
// rows.
func (s *Server) rebaseCheck(ctx context.Context, db bun.IDB, node, base, latest, checked int64, floor *int64, plan *pushPlan) error {
	if s.cfg.FastForwardOnly {
		return fmt.Errorf("%w: the node holds version %d, the server %d (fast-forward only)", dbsync.ErrPullNeeded, base, latest)
	}
	if floor == nil {
		f, err := rebaseFloor(ctx, db, node)
		if err != nil {
			return err
		}
		floor = &f
	}
	if base == 0 {
		return fmt.Errorf("%w: the node holds no version and the server %d: a push with no base is not rebased (pull first)",
			dbsync.ErrPullNeeded, latest)
	}
	if base <= *floor {
		return fmt.Errorf("%w: the node holds version %d, the server %d, and the node gave up on a push based on version %d or older",
			dbsync.ErrPullNeeded, base, latest, *floor)
	}
	if plan == nil || max(base, checked) >= latest {
		return nil // no version precheck did not read
	}
	return s.rebaseConflicts(ctx, db, node, base, max(base, checked), latest, plan)
}

// rebaseConflicts refuses (dbsync.ErrPullNeeded) a push of node based on
// base whose plan writes or deletes a row another node's version after
// `after` changed.
func (s *Server) rebaseConflicts(ctx context.Context, db bun.IDB, node, base, after, latest int64, plan *pushPlan) error {
	changed, err := s.changedRows(ctx, db, node, after, plan)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		return fmt.Errorf("%w: the node holds version %d, the server %d, and rows of the push changed since: %s",
			dbsync.ErrPullNeeded, base, latest, listSome(changed))
	}
	return nil
}

// rebaseFloor returns the node's rebase floor (sync_rebase_floors): its
// pushes based on that version or an older one are never rebased. 0 when
// the node has none.
func rebaseFloor(ctx context.Context, db bun.IDB, node int64) (int64, error) {
	var floor []int64
	if err := db.NewRaw("SELECT version_id FROM sync_rebase_floors WHERE node_id = ?", node).Scan(ctx, &floor); err != nil {
		return 0, fmt.Errorf("read rebase floor: %w", err)
	}
	if len(floor) == 0 {
		return 0, nil
	}
	return floor[0], nil
}

// raiseRebaseFloors records, for each node, that its pushes based on
// version or an older one are never rebased. forgetAbandoned calls it under
// the version lock for the nodes whose abandoned marks it deleted, version
// being the latest version then: every copy of a marked push was sent
// before its mark, so it is based on the latest version of that time or an
// older one.
func raiseRebaseFloors(ctx context.Context, tx bun.Tx, nodes []int64, version int64) error {
	if len(nodes) == 0 {
		return nil
	}
	rows := make([]rebaseFloorRow, len(nodes))
	for i, n := range nodes {
		rows[i] = rebaseFloorRow{NodeID: n, VersionID: version}
	}
	if _, err := tx.NewInsert().Model(&rows).On("CONFLICT (node_id) DO UPDATE").Set("version_id = EXCLUDED.version_id").Exec(ctx); err != nil {
		return fmt.Errorf("raise rebase floors: %w", err)
	}
	return nil
}

// rebaseFloorRow is one node's rebase floor (sync_rebase_floors, migration
// 0005).
type rebaseFloorRow struct {
	bun.BaseModel `bun:"table:sync_rebase_floors"`

	NodeID    int64 `bun:"node_id,pk"`
	VersionID int64 `bun:"version_id,notnull"`
}

// changedRows names ("table key") up to maxNamedRows rows the plan writes
// or deletes that a version after `after` changed, versions of node
// itself aside, each once however many operations changed it: one query
// per table and batch of keys, on the log's (table, row, version) index.
// The log holds keys as the pushes spelled them: for a table whose keys
// the database does not compare byte for byte (s.keyEq: "ABC" names the
// row "abc" under NOCASE), the log's keys are compared as the key column
// compares them, over the table's entries after `after`, which that
// index still finds by table (the versions' index by version).
func (s *Server) changedRows(ctx context.Context, db bun.IDB, node, after int64, plan *pushPlan) ([]string, error) {
	const q = `SELECT DISTINCT o.row_id FROM sync_operations o
WHERE o.content_type_id = ? AND %s IN (?) AND o.version_id > ?
AND NOT EXISTS (SELECT 1 FROM sync_versions v WHERE v.version_id = o.version_id AND v.node_id = ?)
LIMIT ?`
	var out []string
	for _, tp := range plan.tables {
		keys := make([]string, 0, len(tp.deletes)+len(tp.keys))
		keys = append(keys, tp.deletes...)
		for k := range tp.keys {
			keys = append(keys, k)
		}
		rowID := "o.row_id"
		if eq := s.keyEq[tp.table.Name]; eq != "" {
			rowID = fmt.Sprintf(eq, rowID)
		}
		tq := fmt.Sprintf(q, rowID)
		for start := 0; start < len(keys) && len(out) < maxNamedRows; start += store.Batch {
			var rows []string
			err := db.NewRaw(tq, tp.table.ContentTypeID, bun.List(keys[start:min(start+store.Batch, len(keys))]), after, node, maxNamedRows).
				Scan(ctx, &rows)
			if err != nil {
				return nil, fmt.Errorf("look for rows of %s changed since version %d: %w", tp.table.Name, after, err)
			}
			for _, r := range rows {
				out = append(out, tp.table.Name+" "+r)
			}
		}
	}
	return out, nil
}

// staleRefusal answers a rebased push that the unique or reference checks
// refused with dbsync.ErrPullNeeded: the rows at fault may have changed
// after the push's base, so the node pulls and merges them (merge.md D and
// U rules) before it pushes again, as a fast-forward-only server would
// have had it do. A push based on the latest version gets the refusal
// itself, unless direct writes committed while it was applied
// (directMeanwhile). why says which.
func staleRefusal(err error, why string) error {
	var uc *dbsync.UniqueConstraintError
	if !errors.As(err, &uc) && !(errors.Is(err, dbsync.ErrPushRejected) &&
		!errors.Is(err, dbsync.ErrPullNeeded) && !errors.Is(err, dbsync.ErrRepairNeeded) && !errors.Is(err, dbsync.ErrPushAbandoned)) {
		return err
	}
	return fmt.Errorf("%w: %s, and refused: %s", dbsync.ErrPullNeeded, why, err.Error())
}

// directMeanwhile reports, on PostgreSQL, direct writes pending after a
// push that was not rebased failed (err, as the transaction returned it),
// to the rows its refusal turns on: committed after the push sealed the
// direct writes (it sealed none, or it would be rebased; its rollback
// unsealed nothing else), they are newer than the node's version. The
// push locks the rows it writes, not the rows they reference or that hold
// their unique values: a direct write to one of those (a list deleted
// under the todo the push inserts) can fail its checks, a change the
// node could not see, for it to pull. The rows are the holders of a
// unique conflict (heldConflict; none when the push's own rows conflict),
// the referencing row of a delete refused for it (orphanError), any row
// for the other refusals. A direct write to those rows sealed since the
// push's transaction ended (by a pull or push of another node, in
// version tried, the one the push would have created, or later) counts
// too: the node holds none of those versions. On SQLite the single
// writer orders them. A failure to look counts as none: the refusal
// stands.
func (s *Server) directMeanwhile(ctx context.Context, err error, tried int64) bool {
	if s.kind != dialect.Postgres {
		return false
	}
	var rows []heldRows
	var held *heldConflict
	var orphan *orphanError
	switch {
	case errors.As(err, &held):
		rows = held.holders
	case errors.As(err, &orphan):
		rows = []heldRows{{table: orphan.child, keys: []string{orphan.childKey}}}
	default:
		pending, err := hasPending(ctx, s.db)
		if err == nil && !pending && tried > 0 {
			// Sealed since: a version of direct writes (no node).
			pending, err = s.db.NewSelect().Model((*models.Version)(nil)).
				Where("version_id >= ? AND node_id IS NULL", tried).Exists(ctx)
		}
		return err == nil && pending
	}
	since := "version_id IS NULL"
	if tried > 0 {
		since = fmt.Sprintf("(version_id IS NULL OR version_id >= %d)", tried)
	}
	for _, r := range rows {
		rowID := "row_id"
		if eq := s.keyEq[r.table.Name]; eq != "" {
			rowID = fmt.Sprintf(eq, rowID)
		}
		for start := 0; start < len(r.keys); start += store.Batch {
			pending, err := s.db.NewSelect().Model((*models.Operation)(nil)).
				Where(since+" AND content_type_id = ?", r.table.ContentTypeID).
				Where(rowID+" IN (?)", bun.List(r.keys[start:min(start+store.Batch, len(r.keys))])).Exists(ctx)
			if err == nil && pending {
				return true
			}
		}
	}
	return false
}
