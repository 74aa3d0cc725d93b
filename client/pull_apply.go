package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// pullState is what the lines of one pull share.
type pullState struct {
	res *PullResult
	// merger merges the chunks with the node's pending changes; moves are
	// the keys K1 gave the node's unpushed inserts.
	merger *merge.Merger
	moves  []merge.Move
	// written names the tables rows were written to; refs keeps the rows
	// deleted and the references the chunks left unsettled: the end line
	// checks them.
	written map[string]bool
	refs    *store.Settler
	reg     *dbsync.Registry // the node's tracked tables
	// late holds the rows the chunks deleted that rows still referenced
	// (applyPlan); the end line deletes them.
	late *store.LateDeletes
	// backfill holds the tables and columns the pull asked the server to
	// backfill (nil: none); backfilled counts the rows that came.
	backfill   *backfillReq
	backfilled int64
	// leaving holds, by table, the keys of the scope_out lines so far;
	// treeRefs the rows of tables referencing themselves that still
	// referenced leaving rows: the end line refuses those that did not
	// leave too (a subtree may leave over several lines).
	leaving  map[string]map[string]bool
	treeRefs []protocol.ScopeEntry
	// refused holds the rows the scope_out lines so far refuse (pending
	// changes to leaving rows, rows referencing them): the end line
	// refuses them all, so that one DiscardPending settles the pull.
	refused []protocol.ScopeEntry
}

// settle hands a chunk's touched rows to st.refs, where ApplyTx leaves the
// references to the caller (SQLite), and checks the written rows'
// references to tables dbsync does not track, which st.refs does not see;
// PostgreSQL checks them all itself at commit.
func (st *pullState) settle(ctx context.Context, tx bun.Tx, tc *store.Touched) error {
	if !dialect.ChecksReferencesLater(tx) {
		return nil
	}
	if err := store.CheckUntrackedReferences(ctx, tx, st.reg, tc); err != nil {
		return err
	}
	return st.refs.Add(ctx, tx, tc)
}

// applyPull applies a pull answer in tx, line by line, as it downloads
// (downloadApply; in.hold once tx keeps the node's writers out). The
// header settles the push whose answer was lost (settlePush) and moves the
// node's unpushed inserts out of the server's keys (renumber, K1); each
// versions line is recorded (storeVersions); each chunk is decoded, merged
// with the node's pending changes and written (applyChunk); each backfill
// line (the columns and tables backfill asked for) is written
// (applyBackfill); the end line checks what arrived and what was written
// (finishPull).
//
// prev names the tables the node held in part before the pull: those the
// header names no more, unless the server read their held keys (and sends
// the rows the node lacks), are recorded not pulled, for the next pull to
// backfill (recordScoped).
func (c *Client) applyPull(ctx context.Context, tx bun.Tx, node *models.Node, attempt *models.PushAttempt, backfill *backfillReq, prev []string, in *answer, res *PullResult) error {
	// A SQLite transaction holds the write lock from its start, a
	// PostgreSQL one keeps the writers out once lockForMerge returns.
	pg := dialect.MustOf(tx) == dialect.Postgres
	if !pg {
		in.hold()
	}
	msgs := c.newMessages(in)
	// The next line is parsed, and a chunk decoded, while one is applied.
	stop := msgs.readAhead(func(msg *protocol.Message) (any, error) {
		if msg.Type != protocol.MsgChunk {
			return nil, nil
		}
		return c.decodeChunk(msg)
	})
	defer stop()
	head, err := msgs.header("pull")
	if err != nil {
		return err
	}
	if err := c.lockForMerge(ctx, tx); err != nil {
		return err
	}
	if pg {
		in.hold() // the wait for the lock was no work
	}
	// A server behind the node answers 409 repair_needed, not a pull.
	held, err := latestVersion(ctx, tx)
	if err != nil {
		return err
	}
	if *head.LatestVersionID < held {
		return fmt.Errorf("%w: the pull answers version %d to a node holding version %d", dbsync.ErrBadResponse, *head.LatestVersionID, held)
	}
	res.VersionID = *head.LatestVersionID
	c.scoped = head.Scoped
	res.widened = nil
	if !head.HeldRead {
		for _, name := range prev {
			if !slices.Contains(head.Scoped, name) && c.reg.Table(name) != nil && c.reg.Table(name).Direction.Pulled() &&
				(backfill == nil || !backfill.widened[name]) {
				res.widened = append(res.widened, name)
			}
		}
	}
	if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
		return err
	}
	if p := head.Push; p != nil && p.VersionID != nil && *p.VersionID > *head.LatestVersionID {
		// Taken for applied, the push's operations would leave the log.
		return fmt.Errorf("%w: the pull reports push %s applied as version %d, past its latest version %d",
			dbsync.ErrBadResponse, p.PushID, *p.VersionID, *head.LatestVersionID)
	}
	settled := int64(0)
	if p := head.Push; p != nil && p.VersionID != nil {
		settled = *p.VersionID
	}
	if err := checkRestored(ctx, tx, head, held, settled); err != nil {
		return err
	}
	if err := c.settlePush(ctx, tx, node, attempt, head.Push, res); err != nil {
		return err
	}
	local, err := c.localState(ctx, tx)
	if err != nil {
		return err
	}
	moves, err := c.renumber(ctx, tx, local, head.MaxKeys)
	if err != nil {
		return err
	}
	if len(moves) > 0 {
		res.Conflicts[merge.KindRenumber] += len(moves)
		res.Moved = append(res.Moved, moves...)
	}
	late := &store.LateDeletes{}
	st := &pullState{
		res:      res,
		merger:   c.newMerger(ctx, tx, local, late),
		late:     late,
		moves:    moves,
		written:  map[string]bool{},
		refs:     &store.Settler{},
		reg:      c.reg,
		backfill: backfill,
	}
	for {
		msg, prep, err := msgs.nextPrepared()
		if err != nil {
			return err
		}
		switch msg.Type {
		case protocol.MsgVersions:
			if err := storeVersions(ctx, tx, msg.Versions, *head.LatestVersionID, res); err != nil {
				return err
			}
		case protocol.MsgChunk:
			if err := c.applyChunk(ctx, tx, st, prep.(*decodedChunk)); err != nil {
				return unrenumber(err, moves)
			}
			c.progress(dbsync.Progress{Op: "pull", Phase: "apply", Bytes: in.received(), Operations: res.Operations, Rows: res.Rows})
		case protocol.MsgBackfill:
			if err := c.applyBackfill(ctx, tx, st, msg); err != nil {
				return err
			}
		case protocol.MsgScopeOut:
			if err := c.scopeOut(ctx, tx, st, msg); err != nil {
				return unrenumber(err, moves)
			}
		case protocol.MsgScopeIn:
			if err := c.scopeIn(ctx, tx, st, msg); err != nil {
				return err
			}
		case protocol.MsgEnd:
			return c.finishPull(ctx, tx, st, msg)
		default:
			return fmt.Errorf("%w: unexpected %q line in a pull stream", dbsync.ErrBadResponse, msg.Type)
		}
	}
}

// lockForMerge keeps the node's other writers out of tx, a pull's or a
// reset's, before it reads the pending log (dialect.LockForMerge): a local
// write committed while the merge runs would be unseen by it, and the row
// overwritten with the server's values (PostgreSQL nodes).
func (c *Client) lockForMerge(ctx context.Context, tx bun.Tx) error {
	var tables []string
	for _, t := range c.reg.Tables() {
		tables = append(tables, t.Name)
	}
	return logBusy(dialect.LockForMerge(ctx, tx, tables, c.logLockWait))
}

// logBusy wraps a log lock's timeout (dialect.ErrLogBusy) in the exported
// dbsync.ErrLogBusy, which dialect cannot name (the root package does not
// import it).
func logBusy(err error) error {
	if errors.Is(err, dialect.ErrLogBusy) {
		return fmt.Errorf("%w: %w", dbsync.ErrLogBusy, err)
	}
	return err
}

// foreignKey wraps the database's own foreign key error in
// dbsync.ErrForeignKey: PostgreSQL checks the deferred constraints at
// commit, after the references an apply checks itself (which fail with
// dbsync.ErrForeignKey already), so that a pull, repair or reset refused
// for rows referencing missing ones is one error to the application.
func foreignKey(err error) error {
	if err != nil && !errors.Is(err, dbsync.ErrForeignKey) && dialect.IsForeignKeyViolation(err) {
		return fmt.Errorf("%w: %w", dbsync.ErrForeignKey, err)
	}
	return err
}

// settlePush records what the server says of the push whose answer was
// lost (attempt; nil for none): applied, its operations leave the log as
// after an answered push; not applied (and now never to be), the attempt
// is dropped and its operations are pushed again.
func (c *Client) settlePush(ctx context.Context, tx bun.Tx, node *models.Node, attempt *models.PushAttempt, status *protocol.PushStatus, res *PullResult) error {
	if attempt == nil {
		return nil
	}
	if status == nil || status.PushID != attempt.PushID {
		return fmt.Errorf("%w: the server did not report on push %s", dbsync.ErrBadResponse, attempt.PushID)
	}
	applied := status.VersionID != nil
	res.PushApplied = &applied
	if applied {
		// Its token comes with the versions after the pull's (storeVersions).
		_, err := pushed(ctx, tx, node.NodeID, attempt, *status.VersionID, "", c.cfg.Now().UTC())
		return err
	}
	_, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", attempt.PushID).Exec(ctx)
	return err
}

// storeVersions records the versions a pull brings, none beyond the
// latest its header announced (the node's version is the greatest it
// holds).
func storeVersions(ctx context.Context, tx bun.Tx, versions []protocol.Version, latest int64, res *PullResult) error {
	if len(versions) == 0 {
		return nil
	}
	vs := make([]models.Version, len(versions))
	tokens := make([]models.VersionToken, len(versions))
	for i, v := range versions {
		if v.VersionID <= 0 || v.VersionID > latest {
			return fmt.Errorf("%w: a pull announcing version %d brings version %d", dbsync.ErrBadResponse, latest, v.VersionID)
		}
		vs[i] = models.Version{VersionID: v.VersionID, NodeID: v.NodeID, Created: v.Created}
		tokens[i] = models.VersionToken{VersionID: v.VersionID, Token: v.Token}
	}
	if _, err := tx.NewInsert().Model(&vs).On("CONFLICT (version_id) DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("store versions: %w", err)
	}
	// The node's own versions, recorded when their pushes were answered,
	// get the server's tokens too.
	if err := recordTokens(ctx, tx, tokens); err != nil {
		return err
	}
	res.Versions += len(vs)
	return nil
}

// applyChunk counts one chunk, decoded ahead (decodeChunk), merges it with the node's
// state into a plan, and writes the plan (applyPlan).
func (c *Client) applyChunk(ctx context.Context, tx bun.Tx, st *pullState, chunk *decodedChunk) error {
	st.res.Rows += chunk.rows
	st.res.Operations += int64(len(chunk.ops))
	plan, err := st.merger.Chunk(oplog.CompressRemote(chunk.ops), chunk.payload)
	if err != nil {
		return err
	}
	for _, r := range plan.Conflicts {
		st.res.Conflicts[r.Kind]++
	}
	tc := &store.Touched{}
	if err := c.applyPlan(ctx, tx, plan, st.late, st.written, tc); err != nil {
		return err
	}
	return st.settle(ctx, tx, tc)
}

// finishMerge applies the merge's last plan (merge.Merger.Finish): the
// remote deletes D1 held back until every chunk was merged, applied as a
// chunk's plan is (capture is off; a row still referenced, by a row a
// chunk wrote, waits in st.late, which the caller finishes next). A
// delete D1 may not keep (a pull-only row the node's pending rows depend
// on) refuses the pull: dbsync.ErrPendingChanges naming those rows
// (pendingDependents), nothing applied.
func (c *Client) finishMerge(ctx context.Context, tx bun.Tx, st *pullState) error {
	plan, err := st.merger.Finish()
	if err != nil {
		return unrenumber(pendingDependents(err), st.moves)
	}
	for _, r := range plan.Conflicts {
		st.res.Conflicts[r.Kind]++
	}
	tc := &store.Touched{}
	if err := c.applyPlan(ctx, tx, plan, st.late, st.written, tc); err != nil {
		return err
	}
	return st.settle(ctx, tx, tc)
}

// finishPull closes a pull at its end line: the counts it announces must
// be those that arrived; the merge settles what it held back (D1 decides
// at the end of the pull: finishMerge), and so do the deletes
// (store.LateDeletes); the references of the rows written
// and deleted must hold; the sequences of integer keys move past the keys
// written; capture resumes.
func (c *Client) finishPull(ctx context.Context, tx bun.Tx, st *pullState, end *protocol.Message) error {
	res := st.res
	if end.OperationCount != res.Operations || end.RowCount != res.Rows || end.BackfillCount != st.backfilled {
		return fmt.Errorf("%w: the stream announced %d operations, %d rows and %d backfilled rows, %d, %d and %d arrived",
			dbsync.ErrBadResponse, end.OperationCount, end.RowCount, end.BackfillCount, res.Operations, res.Rows, st.backfilled)
	}
	res.Backfilled = st.backfilled
	if end.ScopeOutCount != res.ScopeOut || end.ScopeInCount != res.ScopeIn {
		return fmt.Errorf("%w: the stream announced %d rows leaving the scope and %d entering it, %d and %d arrived",
			dbsync.ErrBadResponse, end.ScopeOutCount, end.ScopeInCount, res.ScopeOut, res.ScopeIn)
	}
	stay := st.refused
	for _, r := range st.treeRefs {
		if !st.leaving[r.Table][r.PK] {
			stay = append(stay, r)
		}
	}
	if len(stay) > 0 {
		return unrenumber(fmt.Errorf("client: pull refused: the node has unpushed changes to rows that left its scope "+
			"(unshared, access revoked, or moved out by another node's change), or to rows referencing them, "+
			"which the pull would delete: %w",
			&dbsync.ScopeError{Entries: stay}), st.moves)
	}
	if err := c.finishMerge(ctx, tx, st); err != nil {
		return err
	}
	if err := st.late.Finish(ctx, tx, c.reg); err != nil {
		return err
	}
	if err := store.RunDeleteActions(ctx, tx, c.reg, st.refs.DeletedTables()); err != nil {
		return err
	}
	if err := st.refs.Check(ctx, tx, c.reg); err != nil {
		return err
	}
	for name := range st.written {
		t := c.reg.Table(name)
		if t.KeyKind == protocol.KeyInt {
			if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
				return err
			}
		}
	}
	if err := c.recordSchema(ctx, tx); err != nil {
		return err
	}
	if err := c.recordScoped(ctx, tx, c.scoped, append(slices.Clone(res.widened), res.deferred...)); err != nil {
		return err
	}
	return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
}
