package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// Push applies a node's pending operations as one new version.
//
// The rules, python-sync-db's plus exactly-once delivery:
//
//   - A push id already applied returns the version it created
//     (Duplicate): a retried push is applied once. A push id the node gave
//     up on (see Pull) is refused with dbsync.ErrPushAbandoned.
//   - A push without operations is a successful no-op (Empty).
//   - The push's base is the node's latest version (every version up to
//     it held). Based on the server's latest: fast-forward. Based on an
//     older version: rebased on the versions since, when none of them
//     changed a row the push writes or deletes (versions of the pushing
//     node aside), else dbsync.ErrPullNeeded naming such rows (rebase.go;
//     Config.FastForwardOnly refuses every push that is behind). Ahead of
//     the server: dbsync.ErrRepairNeeded (the server lost history).
//     Below the log floor (Trim): dbsync.ErrResetRequired.
//   - Each row ends in its final state: deleted if the row's last
//     operation is a delete, else written from the payload (insert or
//     replace). Foreign key checks are deferred to commit.
//   - Unique values the node moved between its rows (swaps) are applied;
//     a unique value the node gave a row while another server row holds it
//     is refused with a *dbsync.UniqueConstraintError naming the node's
//     rows. Nothing is written then.
//   - A row written under another spelling of its text key than the
//     server's, where the key column's collation takes the two for one
//     ("ABC" for "abc"), is refused with dbsync.ErrPushRejected naming
//     the server's spelling, nothing written (key_spelling.go).
//
// Version numbers are allocated under a lock shared by all server
// processes, and the version, its operations (logged by the push itself,
// tagged with the version, with the capture triggers switched off), the
// rows and the push id commit together.
func (s *Server) Push(ctx context.Context, node int64, req *protocol.PushRequest) (resp *protocol.PushResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "push", NodeID: node}
	defer func() {
		ev.Err = err
		if resp != nil {
			ev.VersionID = resp.NewVersionID
		}
		s.emit(ctx, ev, start)
	}()
	if req == nil {
		return nil, fmt.Errorf("%w: empty push", dbsync.ErrBadRequest)
	}
	if err := checkPushBase(req.LatestVersionID); err != nil {
		return nil, err
	}
	if err := checkVersionToken(req.LatestVersionToken); err != nil {
		return nil, err
	}
	return s.push(ctx, node, req, &ev)
}

// checkPushBase refuses a push's base (nil: none) that is no version a
// node can hold: a negative one would be answered pull_needed, or
// reset_required below the log floor, and the node would pull or reset
// over a malformed request.
func checkPushBase(base *int64) error {
	if base != nil && *base < 0 {
		return fmt.Errorf("%w: latest_version_id %d is negative", dbsync.ErrBadRequest, *base)
	}
	return nil
}

// push plans and applies a whole push in memory (Push; a chunked commit
// goes through applyStaged).
func (s *Server) push(ctx context.Context, node int64, req *protocol.PushRequest, ev *dbsync.Event) (*protocol.PushResponse, error) {
	plan, err := s.planPush(req)
	if err != nil {
		return nil, err
	}
	ev.Operations, ev.Rows = int64(len(req.Operations)), int64(plan.rowCount())
	return s.applyPush(ctx, node, req, plan, len(req.Operations), func(ctx context.Context, tx bun.Tx, version, _ int64, bumps keyBumps) error {
		if err := s.apply(ctx, tx, plan, bumps); err != nil {
			return err
		}
		if err := s.logPlan(ctx, tx, plan, version); err != nil {
			return err
		}
		tc := plan.touched(s.reg)
		if err := store.VerifyReferences(ctx, tx, s.reg, tc); err != nil {
			return err
		}
		if err := store.CheckRestrictedDeletes(ctx, tx, s.reg, tc); err != nil {
			return err
		}
		if err := store.RunDeleteActionsRestricted(ctx, tx, s.reg, tc.DeletedTables()); err != nil {
			return err
		}
		return store.CheckUntrackedReferences(ctx, tx, s.reg, tc)
	})
}

// logPlan logs the operations of a push's plan in version (oplog.Log).
func (s *Server) logPlan(ctx context.Context, tx bun.Tx, plan *pushPlan, version int64) error {
	err := oplog.Log(ctx, tx, plan.operations(version))
	return s.refusedKey(ctx, err, func(yield func(table, key string) bool) {
		for _, tp := range plan.tables {
			for _, k := range tp.deletes {
				if !yield(tp.table.Name, k) {
					return
				}
			}
			for k := range tp.keys {
				if !yield(tp.table.Name, k) {
					return
				}
			}
		}
	})
}

// refusedKey turns the database's refusal of a value (dialect.RefusedValue)
// where it indexes a push's keys (the log, the staged keys of a chunk)
// into the push's fault (dbsync.ErrBadRequest), naming the table of its
// longest key: a text key too large for the indexes of a PostgreSQL
// server (about 2.7 kB), which no row of the table can have. Any other
// error is returned as it is.
func (s *Server) refusedKey(ctx context.Context, err error, keys iter.Seq2[string, string]) error {
	r, ok := dialect.RefusedValue(err)
	if !ok {
		return err
	}
	var table, key string
	for t, k := range keys {
		if len(k) > len(key) {
			table, key = t, k
		}
	}
	s.log.WarnContext(ctx, "server: a pushed key refused by the database", slog.String("table", table), slog.Int("bytes", len(key)), slog.String("error", err.Error()))
	return fmt.Errorf("%w: the server's database refuses a key of %s of %d bytes: %s", dbsync.ErrBadRequest, table, len(key), r.What)
}

// checkPush validates a push request, or one chunk of a push, on its own:
// its shape (Validate), its push id, pushed tables, keys, and its payload
// against its operations. It returns the decoded rows.
func (s *Server) checkPush(req *protocol.PushRequest) (map[string]map[string]reflect.Value, error) {
	if err := req.Validate(s.reg); err != nil {
		return nil, err
	}
	if err := checkPushID(req.PushID); err != nil {
		return nil, err
	}
	for _, op := range req.Operations {
		if !s.reg.Table(op.Table).Direction.Pushed() {
			return nil, fmt.Errorf("%w: table %s is pull-only", dbsync.ErrBadRequest, op.Table)
		}
		if err := store.CheckValue(reflect.ValueOf(op.RowID)); err != nil {
			return nil, fmt.Errorf("%w: key of %s: %w", dbsync.ErrBadRequest, op.Table, err)
		}
	}
	rows, err := decodePayload(s.reg, req)
	if err != nil {
		return nil, err
	}
	if err := s.checkSendable(req, rows); err != nil {
		return nil, err
	}
	return rows, nil
}

// maxEscape is the most a value grows from its size in a push to its
// size as the server sends it: encoding/json writes < as \u003c.
const maxEscape = 6

// checkSendable refuses (a *dbsync.ValueError wrapping
// dbsync.ErrBadRequest, naming the row and its largest column) a pushed
// row that, as the server sends it (its wire form, encodeRow), leaves a
// line too little room within the longest line a client reads (twice the
// line budget: protocol.MaxLineBytes): accepted, it would fail every pull
// and repair carrying it, for every node (ErrTooLarge), until someone
// deleted it. A value of a json column grows up to maxEscape times (<, >
// and & escaped): only the rows of tables with a row that large as pushed
// are encoded.
func (s *Server) checkSendable(req *protocol.PushRequest, rows map[string]map[string]reflect.Value) error {
	limit := 2*s.lineBudget - min(64<<10, s.lineBudget/8) // room for the line around the row
	for table, raws := range req.Payload {
		if !slices.ContainsFunc(raws, func(raw json.RawMessage) bool { return len(raw)*maxEscape > limit }) {
			continue
		}
		t := s.reg.Table(table)
		for key, strct := range rows[table] {
			raw, err := t.Codec().AppendRow(nil, strct)
			if err != nil {
				return &dbsync.ValueError{Table: t.Name, Key: key, Err: fmt.Errorf("%w: %w", dbsync.ErrBadRequest, err)}
			}
			if len(raw) <= limit {
				continue
			}
			column, size := "", 0
			for _, c := range t.Columns {
				if v, ok, err := t.Codec().TupleKey(strct, []string{c.Name}); err == nil && ok && len(v) > size {
					column, size = c.Name, len(v)
				}
			}
			return &dbsync.ValueError{Table: t.Name, Key: key, Column: column,
				Err: fmt.Errorf("%w: the row takes %d bytes as the server sends it, more than the %d a line of a pull or repair leaves it (protocol.MaxLineBytes)",
					dbsync.ErrBadRequest, len(raw), limit)}
		}
	}
	return nil
}

// planPush validates a whole push (checkPush) and reduces it to what it
// writes.
func (s *Server) planPush(req *protocol.PushRequest) (*pushPlan, error) {
	rows, err := s.checkPush(req)
	if err != nil {
		return nil, err
	}
	return finalState(s.reg, req.Operations, rows), nil
}

// applyPush applies a validated push of ops operations in one
// transaction. Before it, without the version lock: the push id look up
// (exactly once: pushSeen; recordPush catches an id recorded since), an
// empty push's answer, and precheck. Under the lock (every statement
// there holds every other push up): the base check (checkBase), the
// version, then write, which writes the rows, their log and checks the
// references, with capture off. plan is the whole push when it is in
// memory (nil for a chunked commit: write checks a rebased push's rows
// itself, from rebasedFrom; -1 when not rebased). Chunks staged under the
// push id are deleted with it; a push refused for good (ErrPushRejected, a
// unique conflict) deletes them too, since its node will not commit it
// again. req carries the push id and base version, and the operations of
// a push of one request (for the hooks).
func (s *Server) applyPush(ctx context.Context, node int64, req *protocol.PushRequest, plan *pushPlan, ops int,
	write func(ctx context.Context, tx bun.Tx, version, rebasedFrom int64, bumps keyBumps) error) (resp *protocol.PushResponse, err error) {
	// A node without a version holds version 0, as its pull says: noted
	// only as seen, a node whose first version is its own push, which
	// it need not pull, would not count as live, and a trim could raise
	// the floor past what it holds (TestWatchAcrossRebaseAndTrim).
	base := int64(0)
	if req.LatestVersionID != nil {
		base = *req.LatestVersionID
	}
	if floor, err := logFloor(ctx, s.db); err != nil {
		return nil, err
	} else if base >= floor {
		s.noteHeld(ctx, node, base)
	} else if req.LatestVersionID == nil {
		s.noteSeen(ctx, node)
	}
	// (A base below the log floor is refused below, reset_required unless
	// the push was applied already: no sign of life, as for a pull. Noted,
	// a node that pushes on without resetting (its reset failing, or an
	// application calling Push alone) would stay live, holding the floor
	// where it is for every node.)
	// What needs no lock is decided before it: a push id seen already
	// (its record never changes), an empty push, a refusal of a push
	// behind (precheck).
	if resp, err := s.pushSeen(ctx, node, req.PushID); resp != nil || err != nil {
		return resp, err
	}
	if ops == 0 {
		latest, err := latestVersion(ctx, s.db)
		if err != nil {
			return nil, err
		}
		return &protocol.PushResponse{NewVersionID: latest, Empty: true}, dropChunks(ctx, s.db, node, req.PushID)
	}
	checked, err := s.precheck(ctx, node, req, plan)
	if err != nil {
		return nil, s.refused(ctx, node, req.PushID, err)
	}
	var rebased bool
	var tried int64 // the version the push would have created
	err = dialect.ApplyTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockVersions(ctx, tx); err != nil {
			return fmt.Errorf("lock versions: %w", err)
		}
		if err := s.lockRows(ctx, tx, plan); err != nil {
			return err
		}
		if _, err := s.seal(ctx, tx); err != nil {
			return err
		}
		version, rb, err := s.checkBase(ctx, tx, node, req.LatestVersionID, req.OwnVersionID, req.LatestVersionToken, checked, plan)
		if err != nil {
			return s.scopeFirst(ctx, tx, node, plan, err)
		}
		rebased, tried = rb, version
		token, err := s.recordPush(ctx, tx, node, req.PushID, version)
		if err != nil {
			return err
		}
		info := &PushInfo{NodeID: node, Request: req, Operations: ops, VersionID: version}
		if s.cfg.BeforePush != nil {
			if err := s.cfg.BeforePush(ctx, tx, info); err != nil {
				return err
			}
		}
		// A refusal before the writes does not end the push yet: the
		// writes and the check after them run on (the transaction rolls
		// back), so that the refusal names the rows of both checks and
		// one DiscardPending settles the node's push.
		scope, err := s.guardScope(ctx, tx, node, plan)
		var refused *dbsync.ScopeError
		if err != nil && !errors.As(err, &refused) {
			return err
		}
		// The rows are written with capture off, and the version's
		// operations logged in bulk: one per row, as it ends.
		if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
			return withRefusal(refused, err)
		}
		rebasedFrom := int64(-1)
		if rb {
			rebasedFrom = 0
			if req.LatestVersionID != nil {
				rebasedFrom = *req.LatestVersionID
			}
		}
		bumps := keyBumps{}
		if err := write(ctx, tx, version, rebasedFrom, bumps); err != nil {
			return withRefusal(refused, err)
		}
		if err := s.overwritten(ctx, tx, version); err != nil {
			return withRefusal(refused, err)
		}
		if err := scope.after(ctx, tx); err != nil || refused != nil {
			return withRefusal(refused, err)
		}
		if plan != nil { // a chunked push checks each chunk (applyStaged)
			respelt, err := s.respelledWrites(ctx, tx, plan, nil)
			if err != nil {
				return err
			}
			if err := respelt.refusal(ctx, tx); err != nil {
				return err
			}
		}
		// Checked: the key sequences move past the keys written (a
		// refused push, rolled back, leaves them where they were:
		// PostgreSQL does not undo a setval).
		if err := bumps.apply(ctx, tx); err != nil {
			return err
		}
		// Capture is back on for AfterPush's writes; nothing else needs
		// it where the setting ends with the transaction.
		if s.cfg.AfterPush != nil || !dialect.CaptureEndsWithTx(tx) {
			if err := dialect.ResetCapture(ctx, tx, dialect.OplogSwitch); err != nil {
				return err
			}
		}
		if s.cfg.AfterPush != nil {
			if err := s.cfg.AfterPush(ctx, tx, info); err != nil {
				return err
			}
		}
		resp = &protocol.PushResponse{NewVersionID: version, NewVersionToken: token}
		return dropChunks(ctx, tx, node, req.PushID)
	})
	if err != nil {
		// A copy of the push may have been applied, or the push id
		// marked abandoned, after pushSeen: that is the answer.
		seen, serr := s.pushSeen(ctx, node, req.PushID)
		if seen != nil || errors.Is(serr, dbsync.ErrPushAbandoned) {
			return seen, serr
		}
		if serr != nil && errors.Is(err, errRecordedMeanwhile) {
			// Recorded by another request, and which record it is (a
			// copy applied, or the id given up) could not be read: the
			// push may have been applied, so this is no refusal (on
			// which a node drops the attempt and pushes its operations
			// again under another id), but a failure it resends on.
			return nil, fmt.Errorf("server: push %s was recorded by another request meanwhile, and reading its record failed: %w", req.PushID, serr)
		}
		raw := err
		if s.pushFailed != nil {
			s.pushFailed()
		}
		err = s.pushError(ctx, node, err)
		switch {
		case rebased:
			err = staleRefusal(err, "the push was rebased on versions the node does not hold")
		case s.directMeanwhile(ctx, raw, tried):
			err = staleRefusal(err, "direct writes committed while the push was applied")
		}
		return nil, s.refused(ctx, node, req.PushID, err)
	}
	s.changes().advance(resp.NewVersionID)
	s.log.InfoContext(ctx, "server: push accepted", slog.Int64("node", node), slog.Int64("version", resp.NewVersionID),
		slog.Int("operations", ops), slog.Bool("rebased", rebased))
	return resp, nil
}

// pushSeen answers a push whose id the server has recorded: the version
// it created (Duplicate, after dropping what is staged under it), or
// dbsync.ErrPushAbandoned. Both nil when the id is not recorded.
func (s *Server) pushSeen(ctx context.Context, node int64, pushID string) (*protocol.PushResponse, error) {
	p, err := s.lookupPush(ctx, node, pushID)
	switch {
	case err != nil || p == nil:
		return nil, err
	case p.VersionID == nil:
		return nil, fmt.Errorf("%w: push %s", dbsync.ErrPushAbandoned, pushID)
	}
	if err := dropChunks(ctx, s.db, node, pushID); err != nil {
		return nil, err
	}
	token, err := versionToken(ctx, s.db, *p.VersionID)
	if err != nil {
		return nil, err
	}
	return &protocol.PushResponse{NewVersionID: *p.VersionID, NewVersionToken: token, Duplicate: true}, nil
}

// refused returns the error refusing a push, after deleting the chunks
// staged under its push id when the refusal is for good (ErrPushRejected,
// a unique conflict): its node will not commit it again.
func (s *Server) refused(ctx context.Context, node int64, pushID string, err error) error {
	var uc *dbsync.UniqueConstraintError
	var se *dbsync.ScopeError
	if errors.Is(err, dbsync.ErrPushRejected) || errors.As(err, &uc) || errors.As(err, &se) {
		if derr := dropChunks(context.WithoutCancel(ctx), s.db, node, pushID); derr != nil {
			s.log.WarnContext(ctx, "server: dropping the chunks of a refused push failed", slog.Int64("node", node), slog.String("error", derr.Error()))
		}
	}
	return err
}

// errRecordedMeanwhile is recordPush finding the push id recorded since
// applyPush looked it up: by a copy of the push applied meanwhile, or by a
// pull that gave it up. applyPush answers from the record, which it reads
// again; it wraps dbsync.ErrPushAbandoned for the case it cannot tell.
var errRecordedMeanwhile = fmt.Errorf("%w", dbsync.ErrPushAbandoned)

// recordPush records the push id as applied in version, and creates the
// version with its token, which it returns.
func (s *Server) recordPush(ctx context.Context, tx bun.Tx, node int64, pushID string, version int64) (string, error) {
	now := s.cfg.Now().UTC()
	if s.kind == dialect.Postgres {
		token := newVersionToken()
		return token, recordPushFolded(ctx, tx, node, pushID, version, token, now)
	}
	// The version's watchers, on every server process, learn of it when
	// the transaction commits.
	if err := dialect.NotifyVersion(ctx, tx, version); err != nil {
		return "", err
	}
	// Record the push id first, without overwriting: a pull asking about
	// this push id (Pull, pushStatus) marks it abandoned outside the
	// version lock. If that mark committed after the look-up in applyPush,
	// the push must not be applied; if it comes later, it waits for this
	// transaction and then reports the version.
	rec, err := tx.NewInsert().Model(&models.Push{PushID: pushID, NodeID: node, VersionID: &version, Created: now}).
		On("CONFLICT DO NOTHING").Exec(ctx)
	if err != nil {
		return "", fmt.Errorf("record push id: %w", err)
	}
	if n, err := rec.RowsAffected(); err != nil {
		return "", fmt.Errorf("record push id: %w", err)
	} else if n == 0 {
		// Recorded since applyPush looked (pushSeen): a copy applied, or
		// the id marked abandoned; applyPush answers from the record.
		return "", fmt.Errorf("%w: push %s was recorded while it was being applied", errRecordedMeanwhile, pushID)
	}
	if _, err := tx.NewInsert().Model(&models.Version{VersionID: version, NodeID: &node, Created: now}).Exec(ctx); err != nil {
		return "", fmt.Errorf("create version: %w", err)
	}
	token, err := recordToken(ctx, tx, version)
	if err != nil {
		return "", err
	}
	return token, forgetAbandoned(ctx, tx, version-1)
}

// recordPushFolded is recordPush on PostgreSQL in one statement, one
// round trip under the version lock instead of five or six: the
// notification, the push id recorded (not overwriting), the version
// created with its token, the abandoned marks deleted and their nodes' rebase floors
// raised (forgetAbandoned). Every part sees the snapshot the statement
// starts from, so the delete never sees the push id just recorded; when
// the push id was recorded already, nothing else is written and the
// transaction is rolled back (its notification with it).
func recordPushFolded(ctx context.Context, tx bun.Tx, node int64, pushID string, version int64, token string, now time.Time) error {
	q := `WITH rec AS (
  INSERT INTO sync_pushes (push_id, node_id, version_id, created) VALUES (?, ?, ?, ?::timestamptz)
  ON CONFLICT DO NOTHING RETURNING push_id),
ver AS (
  INSERT INTO sync_versions (version_id, node_id, created) SELECT ?::bigint, ?::bigint, ?::timestamptz FROM rec RETURNING version_id),
tok AS (
  INSERT INTO sync_version_tokens (version_id, token) SELECT ?::bigint, ?::text FROM rec
  ON CONFLICT (version_id) DO UPDATE SET token = EXCLUDED.token RETURNING version_id),
gone AS (
  DELETE FROM sync_pushes WHERE version_id IS NULL AND EXISTS (SELECT 1 FROM rec) RETURNING node_id),
floors AS (
  INSERT INTO sync_rebase_floors (node_id, version_id) SELECT DISTINCT node_id, ?::bigint FROM gone
  ON CONFLICT (node_id) DO UPDATE SET version_id = EXCLUDED.version_id RETURNING node_id)
SELECT (SELECT COUNT(*) FROM rec), (SELECT COUNT(*) FROM ver), (SELECT COUNT(*) FROM tok), (SELECT COUNT(*) FROM floors),
  (SELECT COUNT(*) FROM (SELECT ` + dialect.NotifyVersionCall + `) n)`
	var recorded, created, tokens, floors, notified int
	if err := tx.NewRaw(q, pushID, node, version, now, version, node, now, version, token, version-1, fmt.Sprint(version)).
		Scan(ctx, &recorded, &created, &tokens, &floors, &notified); err != nil {
		return fmt.Errorf("record push %s in version %d: %w", pushID, version, err)
	}
	if recorded == 0 {
		// Recorded since applyPush looked (pushSeen): a copy applied, or
		// the id marked abandoned; applyPush answers from the record.
		return fmt.Errorf("%w: push %s was recorded while it was being applied", errRecordedMeanwhile, pushID)
	}
	if created != 1 || tokens != 1 {
		return fmt.Errorf("create version %d: %d rows written, %d tokens", version, created, tokens)
	}
	return nil
}

// orphanError is checkOrphans' refusal: the push deletes key of parent,
// which childKey of child still references. It is dbsync.ErrPushRejected
// and dbsync.ErrForeignKey (409 foreign_key, docs/protocol.md): the push
// would leave a row referencing a missing row.
type orphanError struct {
	parent, child *dbsync.Table
	key, childKey string
	column        string // child's foreign key column
	// respelled is a key of parent the push writes that differs from
	// key only by case (a case-only edit of the key, noteRespelled).
	respelled string
}

func (e *orphanError) Error() string {
	hint := ""
	if e.respelled != "" {
		hint = fmt.Sprintf(" (the push writes %s %s: a case-only edit of the key, which the rows referencing it did not follow, as a foreign key without ON UPDATE CASCADE leaves them on SQLite; update them to %s, or give the change up with DiscardPending)",
			e.parent.Name, e.respelled, e.respelled)
	}
	return fmt.Sprintf("%v: the push deletes %s %s, which %s %s still references%s",
		dbsync.ErrPushRejected, e.parent.Name, e.key, e.child.Name, e.childKey, hint)
}

// noteRespelled sets, when err is an orphanError, its respelled key: the
// first of the keys of its parent table the push writes (handed to fn a
// page at a time by written) that differs from the deleted key only by
// case. It returns err.
func noteRespelled(err error, written func(fn func(keys []string) error) error) error {
	var orphan *orphanError
	if !errors.As(err, &orphan) || orphan.respelled != "" {
		return err
	}
	_ = written(func(keys []string) error {
		for _, k := range keys {
			if k != orphan.key && strings.EqualFold(k, orphan.key) {
				orphan.respelled = k
				return errFound
			}
		}
		return nil
	})
	return err
}

// errFound stops noteRespelled's pages.
var errFound = errors.New("found")

func (e *orphanError) Unwrap() []error {
	return []error{dbsync.ErrPushRejected, dbsync.ErrForeignKey}
}

// pushError turns the database's refusals of a push into dbsync's errors.
// On a server with scopes, the delete of a row that a row outside the
// node's scope references is a *dbsync.ScopeError naming the node's row
// (merge.md S5): the node cannot see, change or delete that row, so only
// giving up its delete (client.DiscardPending) lets it sync, and the
// answer must not name a row it may not read. So is, on any server, a
// delete of a row that rows of a table the node does not pull, or
// through a table or column it does not know, reference. A referencing
// row in its scope is one it does not hold (a node's capture logs the
// deletes and updates its delete causes): dbsync.ErrPullNeeded, the pull
// brings it.
func (s *Server) pushError(ctx context.Context, node int64, err error) error {
	var orphan *orphanError
	if errors.As(err, &orphan) {
		if vt := s.reg.Table(orphan.child.Name); vt == nil || !vt.Direction.Pulled() || vt.Column(orphan.column) == nil {
			// A table the node never reads (push-only), or a table or
			// column it does not know (its release predates it, merge.md
			// E1): no pull brings the reference, so the node can only give
			// its delete up.
			return &dbsync.ScopeError{Entries: []protocol.ScopeEntry{{Table: orphan.parent.Name, PK: orphan.key}}}
		}
	}
	if orphan != nil && s.scopes != nil {
		cond, rerr := s.readFilter(ctx, s.db, node, orphan.child, orphan.child.Schema().SQLName)
		if rerr != nil {
			return rerr
		}
		if cond != nil {
			seen, rerr := store.ExistingWhere(ctx, s.db, orphan.child, []string{orphan.childKey}, cond)
			if rerr != nil {
				return rerr
			}
			if !seen[orphan.childKey] {
				return &dbsync.ScopeError{Entries: []protocol.ScopeEntry{{Table: orphan.parent.Name, PK: orphan.key}}}
			}
		}
		// The node may read the row but does not hold it (it entered the
		// node's scope without a version, or the node gave up its delete):
		// its next pull brings it, and the row deleted back (D2).
		return fmt.Errorf("%w: %s %s, which the push deletes, is referenced by %s %s: pull it first",
			dbsync.ErrPullNeeded, orphan.parent.Name, orphan.key, orphan.child.Name, orphan.childKey)
	}
	if orphan != nil {
		return err // foreign_key, naming both rows
	}
	switch {
	case dialect.IsUniqueViolation(err):
		return &dbsync.UniqueConstraintError{Entries: nil}
	case errors.Is(err, dbsync.ErrForeignKey):
		// The push leaves rows referencing missing rows: the check names
		// them from the registry. Wrapping both, it is answered
		// foreign_key (dbsync.Code).
		return fmt.Errorf("%w: %w", dbsync.ErrPushRejected, err)
	case dialect.IsForeignKeyViolation(err):
		// The database's own check refused what VerifyReferences passed: a
		// foreign key to a table dbsync does not track. Its text stays in
		// the log.
		s.log.WarnContext(ctx, "server: push refused by a foreign key of the database", slog.Int64("node", node), slog.String("error", err.Error()))
		if table, ok := dialect.DeleteRestrictedBy(err); ok {
			// A row the push deletes, which rows of an untracked table
			// reference without an ON DELETE action (as
			// store.CheckRestrictedDeletes refuses on SQLite).
			return fmt.Errorf("%w: %w: a row the push deletes is referenced by rows of %s, a table dbsync does not track", dbsync.ErrPushRejected, dbsync.ErrForeignKey, table)
		}
		return fmt.Errorf("%w: %w: the push leaves a row referencing a missing row of an untracked table", dbsync.ErrPushRejected, dbsync.ErrForeignKey)
	}
	if r, ok := dialect.RefusedValue(err); ok {
		// What the push set off in a row it does not write (an ON DELETE
		// action of a foreign key: SET NULL into a NOT NULL column): the
		// pushed rows' own refusals are ValueErrors (writePlan).
		s.log.WarnContext(ctx, "server: push refused by the database", slog.Int64("node", node), slog.String("error", err.Error()))
		where := ""
		if r.Table != "" {
			where = " in " + r.Table
		}
		return fmt.Errorf("%w: the database refuses what the push set off%s (%s), such as an ON DELETE action of a foreign key", dbsync.ErrPushRejected, where, r.What)
	}
	return err
}

// decodePayload decodes the payload of a validated push into model structs
// by table and key, and refuses (dbsync.ErrBadRequest) a payload that does
// not match the operations: the row of every insert and update must be
// there (a push that loses them would be applied without them), and no
// other row.
func decodePayload(reg *dbsync.Registry, req *protocol.PushRequest) (map[string]map[string]reflect.Value, error) {
	out := make(map[string]map[string]reflect.Value, len(req.Payload))
	for table, raws := range req.Payload {
		t := reg.Table(table)
		if t == nil {
			return nil, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, table)
		}
		m := make(map[string]reflect.Value, len(raws))
		for _, raw := range raws {
			ptr, err := t.Codec().DecodeRaw(raw)
			if err != nil {
				return nil, err
			}
			if err := store.CheckRow(t, ptr.Elem()); err != nil {
				return nil, err
			}
			key := t.Codec().KeyOf(ptr.Elem())
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("%w: payload holds row %s of %s twice", dbsync.ErrBadRequest, key, table)
			}
			m[key] = ptr.Elem()
		}
		out[table] = m
	}
	var missing, extra []string
	named := 0
	for _, op := range req.Operations {
		if op.Command == models.Delete {
			continue
		}
		named++
		if _, ok := out[op.Table][op.RowID]; !ok {
			missing = append(missing, op.Table+" "+op.RowID)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the payload lacks the rows of %d inserts and updates: %s",
			dbsync.ErrBadRequest, len(missing), listSome(missing))
	}
	// Validate allows one operation per row: each insert and update
	// found its own row, and the payload holds others only if it holds
	// more rows than that.
	held := 0
	for _, m := range out {
		held += len(m)
	}
	if held > named {
		type rowRef struct{ table, key string }
		isNamed := make(map[rowRef]bool, named)
		for _, op := range req.Operations {
			if op.Command != models.Delete {
				isNamed[rowRef{op.Table, op.RowID}] = true
			}
		}
		for table, m := range out {
			for key := range m {
				if !isNamed[rowRef{table, key}] {
					extra = append(extra, table+" "+key)
				}
			}
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("%w: the payload holds %d rows no insert or update names: %s",
			dbsync.ErrBadRequest, len(extra), listSome(extra))
	}
	return out, nil
}

// listSome joins the first few items of a list for an error message.
func listSome(items []string) string {
	const some = 5
	if len(items) <= some {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:some], ", ") + fmt.Sprintf(" and %d more", len(items)-some)
}

// tablePlan is what a push or repair writes into one table.
type tablePlan struct {
	table   *dbsync.Table
	deletes []string
	upserts []reflect.Value
	keys    map[string]bool // keys of upserts
	existed map[string]bool // upserts whose row the server had before the push
	// late are deletes that rows the push rewrites referenced: deleted
	// after the writes (deleteLate), parked first if a written row takes
	// one of their unique values (uniqueCheck).
	late map[string]bool
	// spelled holds, for deletes naming a row under another spelling of
	// its text key than the server's (deleteSpellings), the server's:
	// the log names the row so.
	spelled map[string]string
	// respelt holds, for rows the push deletes and writes again under
	// another spelling of their text key (respellInPlace: a node's
	// case-only edit of a key), the written key and the server's spelling
	// before: the row was respelled in place, its delete (kept) not
	// applied; the log holds the delete and the insert.
	respelt map[string]string
	kept    map[string]bool
}

// lockRows locks, on PostgreSQL, the rows of the plan that exist, before
// the push seals the direct writes: a direct write to one of them that
// committed before is sealed, and seen by checkBase; a later one waits for
// the push, and is sealed after it. (A direct write does not take the
// version lock: on PostgreSQL it may commit while a push is applied, and
// the push overwrote it unseen, its operation sealed after the push's. On
// SQLite the single writer orders them.) The rows are locked by key,
// table by table in dependency order. A chunked push's commit (nil plan)
// does not lock its rows (README, "How it works": Versions).
func (s *Server) lockRows(ctx context.Context, tx bun.Tx, plan *pushPlan) error {
	if s.kind != dialect.Postgres || plan == nil {
		return nil
	}
	for _, tp := range plan.tables {
		// Rows written take the lock their upsert takes (NO KEY UPDATE:
		// a foreign key check's KEY SHARE, a child inserted meanwhile,
		// does not wait for it, nor it for one); rows deleted, the lock
		// their delete takes.
		for _, set := range []struct {
			keys []string
			mode string
		}{{slices.Collect(maps.Keys(tp.keys)), "FOR NO KEY UPDATE"}, {tp.deletes, "FOR UPDATE"}} {
			if err := lockKeys(ctx, tx, tp.table, set.keys, set.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockKeys locks the rows of t with the given keys that exist, in key
// order, a batch at a time.
func lockKeys(ctx context.Context, tx bun.Tx, t *dbsync.Table, keys []string, mode string) error {
	vals, err := store.KeyArgs(t, slices.Sorted(slices.Values(keys)))
	if err != nil {
		return err
	}
	for part := range slices.Chunk(vals, store.Batch) {
		if _, err := tx.ExecContext(ctx, "SELECT 1 FROM ? WHERE ? IN (?) ORDER BY ? "+mode,
			bun.Ident(t.Name), bun.Ident(t.PK.Name), bun.List(part), bun.Ident(t.PK.Name)); err != nil {
			return fmt.Errorf("lock the rows of %s: %w", t.Name, err)
		}
	}
	return nil
}

// overwritten refuses (dbsync.ErrPullNeeded), on PostgreSQL, a push that
// wrote or deleted a row a direct write changed after the push sealed the
// direct writes. Committed before the push reached the row, the direct
// write was overwritten, and its operation, sealed in a later version,
// would be pulled after the push's: a delete there, and nodes delete a row
// the server holds. Rows lockRows locked cannot be, but rows a push
// inserts have nothing to lock, and a chunked commit locks none first.
// Refused, the push leaves the direct write in place; the node pulls it
// and pushes again. The direct writes of the push's own transaction
// (BeforePush's, with capture on) are the application's to order, and not
// counted. Called after the push's writes, when every row it wrote or
// deleted (that existed) is locked: a direct write committed later cannot
// have touched one.
func (s *Server) overwritten(ctx context.Context, tx bun.Tx, version int64) error {
	if s.kind != dialect.Postgres {
		return nil // the single writer orders them
	}
	var ct int64
	var row string
	// A row's xmin is the (sub)transaction that wrote it: one of a
	// savepoint of the push's (a hook's nested transaction) is not the
	// push's own id, and pg_xact_status, given its 64-bit form (xmin
	// widened against the push's id: both are recent), tells it "in
	// progress", as only the push's own (sub)transactions are among the
	// rows a statement sees. It is asked only of the rows found (it reads
	// the proc array for others').
	err := tx.NewRaw(`WITH found AS MATERIALIZED (
			SELECT o.content_type_id, o.row_id, o.xmin::text::bigint AS x FROM sync_operations AS o
			WHERE o.version_id IS NULL AND o.xmin <> pg_current_xact_id()::xid
			AND EXISTS (SELECT 1 FROM sync_operations AS v
				WHERE v.content_type_id = o.content_type_id AND v.row_id = o.row_id AND v.version_id = ?)),
		me AS (SELECT pg_current_xact_id()::text::bigint AS x8)
		SELECT f.content_type_id, f.row_id FROM found AS f, me
		WHERE pg_xact_status((me.x8 - ((me.x8 % 4294967296 - f.x + 6442450944) % 4294967296 - 2147483648))::text::xid8)
			IS DISTINCT FROM 'in progress'
		LIMIT 1`, version).Scan(ctx, &ct, &row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look for direct writes to the push's rows: %w", err)
	}
	name := fmt.Sprint("content type ", ct)
	if t := s.full.ByContentType(ct); t != nil {
		name = t.Name
	}
	return fmt.Errorf("%w: a direct write to row %s of %s committed while the push was applied", dbsync.ErrPullNeeded, row, name)
}

type pushPlan struct {
	tables []*tablePlan // dependency order
}

// operations returns the log entries of the version: a delete for every row
// deleted, the node's command for every row written.
func (p *pushPlan) operations(version int64) []models.Operation {
	ops := make([]models.Operation, 0, p.rowCount())
	for _, tp := range p.tables {
		ct := tp.table.ContentTypeID
		for _, k := range tp.deletes {
			if held, ok := tp.spelled[k]; ok {
				k = held
			}
			ops = append(ops, models.Operation{RowID: k, ContentTypeID: ct, Command: models.Delete, VersionID: &version})
		}
		for _, strct := range tp.upserts {
			// Log what happened on the server, not what the node did: a
			// row the server already had was updated, whatever the node
			// logged (it may re-create a row another node re-created).
			key := tp.table.Codec().KeyOf(strct)
			cmd := models.Insert
			// A row respelled in place (respellInPlace) is logged as the
			// node's key change: its delete above, and an insert; the
			// nodes respell their row (merge.md K2) or, comparing bytes,
			// replace it.
			if _, respelt := tp.respelt[key]; tp.existed[key] && !respelt {
				cmd = models.Update
			}
			ops = append(ops, models.Operation{RowID: key, ContentTypeID: ct, Command: cmd, VersionID: &version})
		}
	}
	return ops
}

func (p *pushPlan) rowCount() int {
	n := 0
	for _, tp := range p.tables {
		n += len(tp.deletes) + len(tp.upserts)
	}
	return n
}

// touched lists the rows a push writes and deletes, and what the written
// rows reference, for the reference check.
func (p *pushPlan) touched(reg *dbsync.Registry) *store.Touched {
	tc := &store.Touched{}
	for _, tp := range p.tables {
		deletes := tp.deletes
		if len(tp.kept) > 0 {
			deletes = slices.DeleteFunc(slices.Clone(deletes), func(k string) bool { return tp.kept[k] })
		}
		tc.Deleted(tp.table, deletes...)
		for _, strct := range tp.upserts {
			tc.WroteRow(reg, tp.table, strct)
		}
	}
	return tc
}

// finalState reduces operations to each row's final state: Validate
// allows one operation per row, which decides. decodePayload made sure
// the payload holds the row of every insert and update.
func finalState(reg *dbsync.Registry, ops []protocol.Operation, rows map[string]map[string]reflect.Value) *pushPlan {
	byTable := map[string]*tablePlan{}
	for _, op := range ops {
		tp := byTable[op.Table]
		if tp == nil {
			// The table's inserts and updates are its payload rows:
			// their slice and set are allocated once.
			n := len(rows[op.Table])
			tp = &tablePlan{table: reg.Table(op.Table), upserts: make([]reflect.Value, 0, n), keys: make(map[string]bool, n)}
			byTable[op.Table] = tp
		}
		if op.Command == models.Delete {
			tp.deletes = append(tp.deletes, op.RowID)
			continue
		}
		tp.upserts = append(tp.upserts, rows[op.Table][op.RowID])
		tp.keys[op.RowID] = true
	}
	plan := &pushPlan{}
	for _, tp := range byTable {
		plan.tables = append(plan.tables, tp)
	}
	sort.Slice(plan.tables, func(i, j int) bool { return plan.tables[i].table.Rank() < plan.tables[j].table.Rank() })
	return plan
}

// apply writes a plan: orphan and unique checks first, then deletes
// children first, then writes parents first, then the late deletes.
// Rows whose unique values the push hands to other rows (swaps) are
// parked first (store.Park) and written in place: no row is deleted to be
// written again, so rows referencing them are untouched, whatever their
// ON DELETE actions. For the same reason a row the push deletes while
// rows the push rewrites still reference it on the server (a child moved
// away from a deleted parent), or late rows do (a grandchild moved away
// from a deleted child), is deleted late, after the writes: deleted
// first, its ON DELETE CASCADE (PostgreSQL; SQLite applies with foreign
// keys off) would delete those rows, and their own children with them,
// before they are written, and the version would log them as new rows.
func (s *Server) apply(ctx context.Context, tx bun.Tx, plan *pushPlan, bumps keyBumps) error {
	if err := s.orphanCheck(ctx, tx, plan); err != nil {
		return err
	}
	swaps, err := uniqueChecks(ctx, tx, plan, nil)
	if err != nil {
		return err
	}
	for _, tp := range plan.tables {
		if tp.spelled, err = s.deleteSpellings(ctx, tx, tp.table, tp.deletes); err != nil {
			return err
		}
		if len(tp.deletes) > 0 && len(tp.keys) > 0 {
			if tp.respelt, tp.kept, err = s.respellInPlace(ctx, tx, tp.table, pages(setKeys(tp.keys)), pages(tp.deletes)); err != nil {
				return err
			}
			for k := range tp.kept {
				delete(tp.late, k)
			}
		}
	}
	for i := len(plan.tables) - 1; i >= 0; i-- {
		tp := plan.tables[i]
		early := tp.deletes
		if len(tp.late) > 0 || len(tp.kept) > 0 {
			early = slices.DeleteFunc(slices.Clone(tp.deletes), func(k string) bool { return tp.late[k] || tp.kept[k] })
		}
		if err := store.Delete(ctx, tx, tp.table, early); err != nil {
			return err
		}
	}
	if err := s.writePlan(ctx, tx, plan, swaps, bumps); err != nil {
		return err
	}
	for i := len(plan.tables) - 1; i >= 0; i-- {
		tp := plan.tables[i]
		if err := s.deleteLate(ctx, tx, tp.table, setKeys(tp.late)); err != nil {
			return err
		}
	}
	return nil
}

// deleteLate deletes, after the writes, rows of t a push deletes that
// rows it rewrites referenced before (orphanCheck's late keys), children
// first. Nothing may reference them any more: a row still referencing one
// (a rewritten row that kept the reference, a new one) refuses the push
// (dbsync.ErrPushRejected), as VerifyReferences would have, instead of
// being deleted by an ON DELETE action.
func (s *Server) deleteLate(ctx context.Context, tx bun.Tx, t *dbsync.Table, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	// The rows deleted here may reference each other (a table
	// referencing itself): those references go with them.
	deleting := make(map[string]bool, len(keys))
	for _, k := range keys {
		deleting[k] = true
	}
	among := func(child *dbsync.Table, refs []string, _ bool) (map[string]bool, error) {
		out := map[string]bool{}
		if child.Name == t.Name {
			for _, k := range refs {
				if deleting[k] {
					out[k] = true
				}
			}
		}
		return out, nil
	}
	if _, err := s.checkOrphans(ctx, tx, t, keys, among, nil); err != nil {
		return err
	}
	return store.Delete(ctx, tx, t, keys)
}

// setKeys returns the keys of a set, sorted.
func setKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// uniqueChecks runs uniqueCheck on every table of a plan and returns the
// swaps, or a *dbsync.UniqueConstraintError naming every conflict.
func uniqueChecks(ctx context.Context, tx bun.Tx, plan *pushPlan, other *otherParts) (map[*tablePlan][]string, error) {
	var conflicts []protocol.UniqueConstraintEntry
	held := &heldConflict{}
	swaps := map[*tablePlan][]string{}
	for _, tp := range plan.tables {
		entries, holders, swap, err := uniqueCheck(ctx, tx, tp, other)
		if err != nil {
			return nil, err
		}
		conflicts = append(conflicts, entries...)
		if len(holders) > 0 {
			held.holders = append(held.holders, heldRows{table: tp.table, keys: holders})
		}
		if len(swap) > 0 {
			swaps[tp] = swap
		}
	}
	if len(conflicts) > 0 {
		held.err = &dbsync.UniqueConstraintError{Entries: conflicts}
		return nil, held
	}
	return swaps, nil
}

// heldConflict is the *dbsync.UniqueConstraintError of uniqueChecks (it
// unwraps to it), with the server rows holding the values in conflict: a
// direct write to one of them, committed while the push was applied, makes
// the refusal one the node could not foresee (directMeanwhile). The rows
// it names are the node's; the holders stay on the server.
type heldConflict struct {
	err     *dbsync.UniqueConstraintError
	holders []heldRows
}

// heldRows are rows of one table, by key.
type heldRows struct {
	table *dbsync.Table
	keys  []string
}

func (e *heldConflict) Error() string { return e.err.Error() }
func (e *heldConflict) Unwrap() error { return e.err }

// writePlan parks the swapped rows (store.Park), then writes the plan's
// rows, parents first, noting which rows the server had before. A value
// the server's database refuses (longer than its column allows, out of
// its range, a null in a NOT NULL column, refused by a CHECK constraint:
// dialect.RefusedValue) fails the push with a *dbsync.ValueError naming
// the table, and the column when the database names it (bad_request); the
// database's own text goes to the log only. The tables of integer keys
// it writes are noted in bumps, their key sequences moved once the push
// is checked (applyPush).
func (s *Server) writePlan(ctx context.Context, tx bun.Tx, plan *pushPlan, swaps map[*tablePlan][]string, bumps keyBumps) error {
	for _, tp := range plan.tables {
		if err := store.Park(ctx, tx, tp.table, swaps[tp], tp.upserts); err != nil {
			return err
		}
	}
	for _, tp := range plan.tables {
		inserted, err := store.WriteReporting(ctx, tx, tp.table, tp.upserts)
		if r, ok := dialect.RefusedValue(err); ok {
			s.log.WarnContext(ctx, "server: a pushed value refused by the database", slog.String("table", tp.table.Name), slog.String("error", err.Error()))
			return &dbsync.ValueError{Table: tp.table.Name, Column: r.Column, Key: nullIn(tp.table, r.Column, tp.upserts),
				Err: fmt.Errorf("%w: the server's database refuses %s", dbsync.ErrBadRequest, r.What)}
		}
		if err != nil {
			return err
		}
		tp.existed = make(map[string]bool, len(tp.upserts))
		for k := range tp.keys {
			if !inserted[k] {
				tp.existed[k] = true
			}
		}
		if tp.table.KeyKind == protocol.KeyInt && len(tp.upserts) > 0 {
			bumps[tp.table.Name] = tp.table
		}
	}
	return nil
}

// keyBumps are the tables of integer keys a push wrote rows of, by name:
// their key sequences (PostgreSQL) move past the greatest key once the
// push passed its checks, so that a push refused (rolled back) does not
// move them, which a rollback does not undo.
type keyBumps map[string]*dbsync.Table

// apply moves the tables' key sequences past their greatest keys.
func (b keyBumps) apply(ctx context.Context, tx bun.Tx) error {
	for _, name := range slices.Sorted(maps.Keys(b)) {
		if err := dialect.BumpSequence(ctx, tx, name, b[name].PK.Name); err != nil {
			return err
		}
	}
	return nil
}

// nullIn returns the key of the first row of rows whose column is written
// as NULL (a nil pointer, or the zero value of a nullzero field), "" for
// none or no such column.
func nullIn(t *dbsync.Table, column string, rows []reflect.Value) string {
	c := t.Column(column)
	if c == nil {
		return ""
	}
	f := c.Field()
	for _, strct := range rows {
		if fv := f.Value(strct); (f.IsPtr && fv.IsNil()) || (f.NullZero && f.IsZero(fv)) {
			return t.Codec().KeyOf(strct)
		}
	}
	return ""
}

// orphanCheck refuses a push that deletes rows other server rows still
// reference, unless the push deletes or rewrites those rows too. The server
// applies a node's final state and never relies on ON DELETE actions,
// which would change rows the node did not push (and SQLite applies with
// foreign keys off): the node's own capture logged its cascades.
func (s *Server) orphanCheck(ctx context.Context, tx bun.Tx, plan *pushPlan) error {
	byName := map[string]*tablePlan{}
	for _, tp := range plan.tables {
		byName[tp.table.Name] = tp
	}
	covered := func(child *dbsync.Table, keys []string, rewrites bool) (map[string]bool, error) {
		out := map[string]bool{}
		if cp := byName[child.Name]; cp != nil {
			deleted := make(map[string]bool, len(cp.deletes))
			for _, k := range cp.deletes {
				deleted[k] = true
			}
			for _, k := range keys {
				if deleted[k] || rewrites && cp.keys[k] {
					out[k] = true
				}
			}
		}
		return out, nil
	}
	// Children first: a late child makes its deleted parent late.
	held := map[string]map[string]bool{} // by table name: a view's tables are not full's
	for i := len(plan.tables) - 1; i >= 0; i-- {
		tp := plan.tables[i]
		late, err := s.checkOrphans(ctx, tx, tp.table, tp.deletes, covered, held)
		if err != nil {
			return noteRespelled(err, pages(setKeys(tp.keys)))
		}
		tp.late = nil
		for _, k := range late {
			if tp.late == nil {
				tp.late = map[string]bool{}
			}
			tp.late[k] = true
		}
		held[tp.table.Name] = tp.late
	}
	return nil
}

// checkOrphans refuses (orphanError: dbsync.ErrForeignKey) the deletion of the rows
// of parent with the given keys while rows of its children reference
// them, unless covered reports those rows as deleted or rewritten by the
// push too. A rewrite counts (rewrites) only where the push can change
// the reference: a node served a view (ForSchema) that does not know the
// child's foreign-key column leaves it as it is. It returns the keys
// referenced by rows the push rewrites and does not delete, or by rows
// late already holds (the late keys of the children's tables by name,
// found first), or, in a table referencing itself, by late rows of parent:
// those must be deleted after the writes (deleteLate). Deleted first,
// their ON DELETE CASCADE would reach the rewritten rows through the
// late rows still there.
func (s *Server) checkOrphans(ctx context.Context, tx bun.Tx, parent *dbsync.Table, keys []string,
	covered func(child *dbsync.Table, keys []string, rewrites bool) (map[string]bool, error),
	late map[string]map[string]bool) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	lateSet := map[string]bool{}
	var self []store.Reference // deleted rows of parent referencing parent
	// Every table the server tracks: a node served a view (ForSchema)
	// may not know the tables that reference parent.
	for _, ch := range s.full.Children(parent.Name) {
		refs, err := store.Referencing(ctx, tx, ch.Table, ch.FK.Column, parent, keys)
		if err != nil {
			return nil, err
		}
		if len(refs) == 0 {
			continue
		}
		children := make([]string, len(refs))
		for i, r := range refs {
			children[i] = r.Child
		}
		vt := s.reg.Table(ch.Table.Name)
		ok, err := covered(ch.Table, children, vt != nil && vt.Column(ch.FK.Column) != nil)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if !ok[r.Child] {
				return nil, &orphanError{parent: parent, key: r.Parent, child: ch.Table, childKey: r.Child, column: ch.FK.Column}
			}
		}
		deleted, err := covered(ch.Table, children, false)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			switch {
			case !deleted[r.Child] || late[ch.Table.Name][r.Child]:
				lateSet[r.Parent] = true
			case ch.Table.Name == parent.Name:
				self = append(self, r)
			}
		}
	}
	for _, k := range store.HoldAncestors(self, func(k string) bool { return lateSet[k] || late[parent.Name][k] }) {
		lateSet[k] = true
	}
	return setKeys(lateSet), nil
}

// uniqueCheck finds, for the rows a push writes, server rows that hold the
// same unique values under another key. A holder the push deletes is fine;
// a holder the push rewrites is a swap (it is parked first, then written
// in place); any other holder is a conflict, and so are two written rows
// with the same values. For one chunk of a chunked push, other tells of
// the holders the chunk does not name: one a later chunk rewrites is a
// swap too, one an earlier chunk wrote is a conflict (both rows are
// named); nil for a push of one request. heldBy lists the holders of the
// conflicts.
func uniqueCheck(ctx context.Context, tx bun.Tx, tp *tablePlan, other *otherParts) (conflicts []protocol.UniqueConstraintEntry, heldBy, swaps []string, err error) {
	t := tp.table
	if len(t.Uniques) == 0 || len(tp.upserts) == 0 {
		return nil, nil, nil, nil
	}
	deleted := make(map[string]bool, len(tp.deletes))
	for _, k := range tp.deletes {
		deleted[k] = true
	}
	swapSet := map[string]bool{}
	for _, cols := range t.Uniques {
		holders, err := store.UniqueHolders(ctx, tx, t, cols, tp.upserts)
		if err != nil {
			return nil, nil, nil, err
		}
		first := map[string]int{}  // tuple → index of the first written row holding it
		twice := map[string]bool{} // first rows reported
		var held [][2]string       // (row, holder) where the holder is another chunk's
		for i, strct := range tp.upserts {
			key := t.Codec().KeyOf(strct)
			tuple, ok, err := t.Codec().TupleKey(strct, cols)
			if err != nil {
				return nil, nil, nil, err
			}
			if ok {
				if j, dup := first[tuple]; dup {
					if k := t.Codec().KeyOf(tp.upserts[j]); !twice[k] {
						twice[k] = true
						conflicts = append(conflicts, protocol.UniqueConstraintEntry{Table: t.Name, PK: k, Columns: cols})
					}
					conflicts = append(conflicts, protocol.UniqueConstraintEntry{Table: t.Name, PK: key, Columns: cols})
					continue
				}
				first[tuple] = i
			}
			holder, ok := holders[i]
			if !ok {
				continue
			}
			switch {
			case holder == key:
			case tp.late[holder] || tp.keys[holder]:
				// Rewritten, or deleted after the writes: parked first.
				swapSet[holder] = true
			case deleted[holder]:
			case other != nil:
				held = append(held, [2]string{key, holder})
			default:
				conflicts = append(conflicts, protocol.UniqueConstraintEntry{Table: t.Name, PK: key, Columns: cols})
				heldBy = append(heldBy, holder)
			}
		}
		if len(held) == 0 {
			continue
		}
		holderKeys := make([]string, len(held))
		for i, h := range held {
			holderKeys[i] = h[1]
		}
		seqs, err := other.seqs(ctx, tx, t, holderKeys)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, h := range held {
			seq, named := seqs[h[1]]
			switch {
			case named && seq > other.seq:
				swapSet[h[1]] = true
				continue
			case named && !twice[h[1]]:
				twice[h[1]] = true
				conflicts = append(conflicts, protocol.UniqueConstraintEntry{Table: t.Name, PK: h[1], Columns: cols})
			}
			conflicts = append(conflicts, protocol.UniqueConstraintEntry{Table: t.Name, PK: h[0], Columns: cols})
			heldBy = append(heldBy, h[1])
		}
	}
	for k := range swapSet {
		swaps = append(swaps, k)
	}
	sort.Strings(swaps)
	return conflicts, heldBy, swaps, nil
}
