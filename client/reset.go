package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// ResetResult describes a Reset.
type ResetResult struct {
	// VersionID is the server version the node holds after the reset.
	VersionID int64
	// Rows and Bytes count the server rows received and the size of the
	// response.
	Rows, Bytes int64
	// Pending counts the rows with unpushed changes before the reset, and
	// Kept those to push after it: of the pending, those the merge rules
	// did not settle (a delete both sides agree on, a change the policy
	// gave up for the server's row), and the rows the merge brought back
	// for them (a parent the server deleted that a pending row
	// references, merge.md D2), so Kept may exceed Pending.
	Pending, Kept int
	// Conflicts counts the conflicts resolved, by kind (merge.Kind*).
	Conflicts map[string]int
	// Moved lists the keys the reset gave the node's unpushed inserts,
	// as PullResult.Moved.
	Moved []merge.Move
}

// Reset brings back a node whose version is below the oldest the server
// keeps a log for (dbsync.ErrResetRequired: the server trimmed the
// versions it would pull). Unlike Repair it keeps the node's unpushed
// changes: it downloads the server's rows, as Repair does, and merges
// them with those changes by the rules of a pull (merge.md, "Reset"), in
// one transaction; the changes that remain are pushed by the next Push or
// Sync. Sync resets by itself when the server answers reset_required.
// Its memory does not grow with the database: the server's keys wait in
// a temporary table of the transaction (resetKeys), where the node's rows
// the server no longer has are found and merged a page at a time. On a
// PostgreSQL node its role needs the TEMPORARY privilege on the database
// (granted to PUBLIC by default). A node
// whose schema gained columns since its latest pull gets them with the
// rows (merge.md T8).
//
// The node cannot tell which of its rows the server changed in the
// versions it missed, so every row it holds a pending change on meets the
// server's row as a conflict, resolved by the table's policy (M3, M4,
// M5, M6), and the D, U and K rules apply as in a pull: a pending insert
// whose unique value the server gave another row fails the reset with a
// *dbsync.UniqueConstraintError naming it, and nothing is applied; a
// row of a pull-only table the server no longer has, which pending rows
// depend on, fails it with dbsync.ErrPendingChanges wrapping a
// *dbsync.ScopeError naming those rows (merge.md D1, T4), nothing applied;
// so does, on a scoped server, such a row of a table the node holds in
// part, which may have left the node's scope rather than been deleted
// (T7: resetDependents).
func (c *Client) Reset(ctx context.Context) (*ResetResult, error) {
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	return c.reset(ctx)
}

// reset downloads the server's rows (download) and merges them with the
// node's pending changes in one transaction (applyReset).
func (c *Client) reset(ctx context.Context) (res *ResetResult, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "reset"}
	defer func() {
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Rows, ev.Bytes, ev.Conflicts = res.VersionID, res.Rows, res.Bytes, res.Conflicts
		}
		c.emit(ctx, ev, start)
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	// The tables the node holds in part (applyReset).
	if err := c.loadScoped(ctx); err != nil {
		return nil, err
	}
	attempt, status, err := c.resetPushStatus(ctx, node)
	if err != nil {
		return nil, err
	}
	stream, err := c.tr.Repair(ctx, c.call(node))
	if err != nil {
		return nil, err
	}
	file, size, err := c.download(ctx, stream, "reset")
	if err != nil {
		return nil, err
	}
	defer file.discard()
	bf, err := c.backfill(ctx)
	if err != nil {
		return nil, err
	}
	res = &ResetResult{Bytes: size, Conflicts: map[string]int{}}
	err = foreignKey(dialect.ApplyTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		return c.applyReset(ctx, tx, node, attempt, status, bf, file, res)
	}))
	if err != nil {
		return nil, err
	}
	c.schemaRecorded = true
	c.progress(dbsync.Progress{Op: "reset", Phase: "done", Bytes: size, Rows: res.Rows})
	c.log.InfoContext(ctx, "client: reset", slog.Int64("version", res.VersionID), slog.Int64("rows", res.Rows),
		slog.Int("pending", res.Pending), slog.Int("kept", res.Kept), slog.Any("conflicts", res.Conflicts))
	c.moved(ctx, res.Moved)
	return res, nil
}

// snapshotIndex is what a first reading of the server's rows tells the
// merge: its greatest integer keys (for a server that does not announce
// them), and the server's copy of the rows the node deleted (for D2: a
// server row referencing one brings it back). Which rows the server has
// goes to the database (resetKeys), not to memory.
type snapshotIndex struct {
	maxKeys map[string]int64
	deleted map[string]map[string]protocol.Row
}

// resetPushStatus asks the server about the node's push whose answer was
// lost, if any (nil, nil without one), with push-status: a node the trim
// left behind cannot ask through a pull, which the trim refuses. The
// server keeps each node's latest applied push through the trim. A push
// not applied is settled as a pull settles it (settleLostPush): on a node
// the trim did not leave behind (a Reset it was not asked for) a copy
// still on its way could else be applied after the reset, over the rows
// the node pushes again, in a version whose operations the node's pulls
// leave out; on a node behind, the pull is refused, and no copy is ever
// applied (its base is below the floor). A transport without PushStatus
// (not a ChunkedTransport) asks only through the pull: answered
// reset_required, the status is nil and the attempt's operations are
// merged as pending (merge.md T2).
func (c *Client) resetPushStatus(ctx context.Context, node *models.Node) (*models.PushAttempt, *protocol.PushStatus, error) {
	var a models.PushAttempt
	switch err := c.db.NewSelect().Model(&a).Limit(1).Scan(ctx); {
	case isNoRows(err):
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("client: read push attempt: %w", err)
	}
	if c.tr.chunked != nil {
		st, err := pushStatus(ctx, c.tr, c.call(node), a.PushID)
		switch {
		case errors.Is(err, dbsync.ErrPushAbandoned):
		case err != nil:
			return nil, nil, err
		case st.VersionID != nil:
			return &a, &protocol.PushStatus{PushID: a.PushID, VersionID: st.VersionID}, nil
		}
	}
	attempt, status, err := c.settleLostPush(ctx, node)
	switch {
	case err != nil:
		return nil, nil, err
	case status != nil:
		return attempt, status, nil
	case c.tr.chunked == nil:
		return &a, nil, nil
	}
	return &a, &protocol.PushStatus{PushID: a.PushID}, nil
}

// applyReset merges the spooled repair stream with the node's pending
// changes in tx. The push whose answer was lost is settled first
// (settlePush: applied, its operations are no longer pending; status nil,
// unknown, they are merged with the others, T2). Then K1
// moves the node's unpushed inserts out of the server's keys; every server
// row is merged as a remote update, a table's rows line as one chunk
// (parents first), after the columns the node's schema gained since its
// latest pull (bf, nil for none) are set from it, as a backfill does (E3);
// the rows the node holds (or deleted) that the server does not have are
// merged as remote deletes (goneRows); the node's versions and pushed log
// entries are replaced by the server's version.
func (c *Client) applyReset(ctx context.Context, tx bun.Tx, node *models.Node, attempt *models.PushAttempt, status *protocol.PushStatus,
	bf *backfillReq, file io.ReadSeeker, res *ResetResult) error {
	if err := c.lockForMerge(ctx, tx); err != nil {
		return err
	}
	if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
		return err
	}
	if status != nil {
		if err := c.settlePush(ctx, tx, node, attempt, status, &PullResult{}); err != nil {
			return err
		}
	}
	if _, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("1 = 1").Exec(ctx); err != nil {
		return fmt.Errorf("client: drop the push attempt: %w", err)
	}
	local, err := c.localState(ctx, tx)
	if err != nil {
		return err
	}
	res.Pending = local.Len()
	keys, err := newResetKeys(ctx, tx, c.resetPage)
	if err != nil {
		return err
	}
	head, idx, err := c.indexSnapshot(ctx, keys, file, local)
	if err != nil {
		return err
	}
	// A node older than its own pushes would push again, as pending, what
	// it had pushed: a reset is no cure for it (Repair is).
	held, err := latestVersion(ctx, tx)
	if err != nil {
		return err
	}
	if err := checkRestored(ctx, tx, head, held, 0); err != nil {
		return err
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("client: rewind the reset stream: %w", err)
	}
	serverMax := idx.maxKeys
	for t, k := range head.MaxKeys {
		serverMax[t] = max(serverMax[t], k)
	}
	moves, err := c.renumber(ctx, tx, local, serverMax)
	if err != nil {
		return err
	}
	if len(moves) > 0 {
		res.Conflicts[merge.KindRenumber] += len(moves)
		res.Moved = moves
	}
	late := &store.LateDeletes{}
	// A row of a table the node holds in part (c.scoped) that the
	// server does not send may have left the node's scope rather than
	// been deleted: the reset cannot tell. D1 does not keep it for the
	// node's pending rows (its re-creation, pushed once the row came
	// back into the scope, would write the node's old copy over the
	// server's row, no conflict told): the reset is refused as a pull is
	// at a move-out (S2), naming the rows (merge.md T7).
	merger := c.newMergerKeeping(ctx, tx, local, late, func(table string) bool { return !slices.Contains(c.scoped, table) })
	written := map[string]bool{}
	applyMerged := func(plan *merge.Plan, err error) error {
		if err != nil {
			// A pull-only row the server does not have, which pending
			// rows depend on, refuses the reset as it does a pull (D1);
			// so does a row of a table held in part (T7).
			return unrenumber(c.resetDependents(err), moves)
		}
		for _, r := range plan.Conflicts {
			res.Conflicts[r.Kind]++
		}
		return c.applyPlan(ctx, tx, plan, late, written, &store.Touched{})
	}
	apply := func(ops []protocol.Operation, payload map[string]map[string]protocol.Row) error {
		return applyMerged(merger.Chunk(ops, payload))
	}
	msgs := c.newMessages(file)
	if _, err := msgs.header("reset"); err != nil {
		return err
	}
	for {
		msg, err := msgs.next()
		if err != nil {
			return err
		}
		if msg.Type == protocol.MsgEnd {
			if msg.RowCount != res.Rows {
				return fmt.Errorf("%w: the stream announced %d rows, %d arrived", dbsync.ErrBadResponse, msg.RowCount, res.Rows)
			}
			break
		}
		ops, payload, err := c.resetChunk(msg, idx)
		if err != nil {
			return err
		}
		if err := c.resetBackfill(ctx, tx, bf, msg); err != nil {
			return err
		}
		res.Rows += int64(len(ops))
		if err := apply(ops, payload); err != nil {
			return err
		}
		c.progress(dbsync.Progress{Op: "reset", Phase: "apply", Bytes: res.Bytes, Rows: res.Rows})
	}
	if err := c.goneRows(ctx, keys, local, res, func(ops []protocol.Operation) error { return apply(ops, nil) }); err != nil {
		return err
	}
	// The remote deletes D1 held back until the end (merge.Merger.Finish).
	if err := applyMerged(merger.Finish()); err != nil {
		return err
	}
	if err := late.Finish(ctx, tx, c.reg); err != nil {
		return err
	}
	for name := range written {
		if t := c.reg.Table(name); t.KeyKind == protocol.KeyText {
			if err := keys.collapsed(ctx, t); err != nil {
				return err
			}
		}
	}
	if err := keys.drop(ctx); err != nil {
		return err
	}
	return c.finishReset(ctx, tx, *head.LatestVersionID, head.LatestVersionToken, written, local, res)
}

// resetDependents is pendingDependents for a reset: when the rows the
// merge refused to keep include rows of tables the node holds in part
// (c.scoped: they may have left its scope, T7), the error is
// dbsync.ErrPendingChanges wrapping a *dbsync.ScopeError naming those
// rows and the pending rows depending on them, for DiscardPending, as a
// pull names them at a move-out (S2).
func (c *Client) resetDependents(err error) error {
	var pd *merge.PendingDependentsError
	if !errors.As(err, &pd) {
		return err
	}
	var left []string
	var entries []protocol.ScopeEntry
	for _, o := range pd.Deleted {
		if slices.Contains(c.scoped, o.Table) {
			left = append(left, o.Table+" pk "+o.Key)
			entries = append(entries, protocol.ScopeEntry{Table: o.Table, PK: o.Key})
		}
	}
	if len(left) == 0 {
		return pendingDependents(err)
	}
	for _, o := range pd.Pending {
		entries = append(entries, protocol.ScopeEntry{Table: o.Table, PK: o.Key})
	}
	slices.SortFunc(entries, func(a, b protocol.ScopeEntry) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.PK, b.PK))
	})
	return fmt.Errorf("%w: the server no longer sends %s (it left the node's scope, or was deleted), which the node's pending changes reference; "+
		"point those rows at other rows, or give their changes up with DiscardPending, and sync again: %w",
		dbsync.ErrPendingChanges, strings.Join(left, "; "), &dbsync.ScopeError{Entries: slices.Compact(entries)})
}

// indexSnapshot reads the spooled stream once (snapshotIndex), staging the
// keys of the server's rows in keys: its header must name the tables the
// node pulls.
func (c *Client) indexSnapshot(ctx context.Context, keys *resetKeys, file io.Reader, local *merge.Local) (*protocol.Message, *snapshotIndex, error) {
	msgs := c.newMessages(file)
	head, err := msgs.header("reset")
	if err != nil {
		return nil, nil, err
	}
	if err := c.checkRepairTables(head); err != nil {
		return nil, nil, err
	}
	idx := &snapshotIndex{maxKeys: map[string]int64{}, deleted: map[string]map[string]protocol.Row{}}
	for {
		msg, err := msgs.next()
		if err != nil {
			return nil, nil, err
		}
		switch msg.Type {
		case protocol.MsgEnd:
			return head, idx, nil
		case protocol.MsgRows:
		default:
			return nil, nil, fmt.Errorf("%w: unexpected %q line in a repair stream", dbsync.ErrBadResponse, msg.Type)
		}
		t := c.reg.Table(msg.Table)
		if t == nil || !t.Direction.Pulled() {
			return nil, nil, fmt.Errorf("%w: repair rows for table %q", dbsync.ErrBadResponse, msg.Table)
		}
		server := make([]string, 0, len(msg.Rows))
		for _, raw := range msg.Rows {
			row, key, err := keyedRow(t, raw)
			if err != nil {
				return nil, nil, err
			}
			server = append(server, key)
			if t.KeyKind == protocol.KeyInt {
				var k int64
				if _, err := fmt.Sscan(key, &k); err == nil {
					idx.maxKeys[t.Name] = max(idx.maxKeys[t.Name], k)
				}
			}
			if op := local.Op(merge.Obj{Table: t.Name, Key: key}); op != nil && op.Command == protocol.Delete {
				if idx.deleted[t.Name] == nil {
					idx.deleted[t.Name] = map[string]protocol.Row{}
				}
				idx.deleted[t.Name][key] = row
			}
		}
		if err := keys.addServer(ctx, t.Name, server); err != nil {
			return nil, nil, err
		}
	}
}

// resetChunk turns a rows line into a chunk of remote updates, one per
// row, with the rows as payload and, for D2, the server's copy of the rows
// the node deleted that they reference.
func (c *Client) resetChunk(msg *protocol.Message, idx *snapshotIndex) ([]protocol.Operation, map[string]map[string]protocol.Row, error) {
	if msg.Type != protocol.MsgRows {
		return nil, nil, fmt.Errorf("%w: unexpected %q line in a repair stream", dbsync.ErrBadResponse, msg.Type)
	}
	t := c.reg.Table(msg.Table)
	rows := make(map[string]protocol.Row, len(msg.Rows))
	payload := map[string]map[string]protocol.Row{t.Name: rows}
	ops := make([]protocol.Operation, 0, len(msg.Rows))
	for _, raw := range msg.Rows {
		row, key, err := keyedRow(t, raw)
		if err != nil {
			return nil, nil, err
		}
		rows[key] = row
		ops = append(ops, protocol.Operation{Table: t.Name, RowID: key, Command: protocol.Update})
		c.deletedParents(t, row, idx, payload)
	}
	return ops, payload, nil
}

// deletedParents adds to payload the server's copies of the rows the node
// deleted that row (of t) references, and theirs, up the chain (D2).
func (c *Client) deletedParents(t *dbsync.Table, row protocol.Row, idx *snapshotIndex, payload map[string]map[string]protocol.Row) {
	for _, fk := range t.ForeignKeys {
		pk, ok := protocol.Key(row[fk.Column])
		if !ok {
			continue
		}
		prow := idx.deleted[fk.RefTable][pk]
		if prow == nil || payload[fk.RefTable][pk] != nil {
			continue
		}
		if payload[fk.RefTable] == nil {
			payload[fk.RefTable] = map[string]protocol.Row{}
		}
		payload[fk.RefTable][pk] = prow
		c.deletedParents(c.reg.Table(fk.RefTable), prow, idx, payload)
	}
}

// goneRows merges, as remote deletes, the rows the node holds or deleted
// that the server does not have (all but the node's own unpushed
// inserts), by pages of keys.resetPage keys (apply merges and writes one):
// the database finds them (resetKeys.markGone), tables that reference
// others first; then the rows the node deleted. (The node's pushed rows
// of push-only tables referencing a gone row go with it: applyPlan.)
func (c *Client) goneRows(ctx context.Context, keys *resetKeys, local *merge.Local, res *ResetResult, apply func([]protocol.Operation) error) error {
	tables := c.reg.Tables()
	for i := len(tables) - 1; i >= 0; i-- {
		t := tables[i]
		if !t.Direction.Pulled() {
			continue
		}
		if err := keys.markGone(ctx, t); err != nil {
			return err
		}
		for first, after := true, ""; ; first = false {
			page, err := keys.gonePage(ctx, t.Name, first, after)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			after = page[len(page)-1]
			ops := make([]protocol.Operation, 0, len(page))
			for _, k := range page {
				if op := local.Op(merge.Obj{Table: t.Name, Key: k}); op == nil || op.Command != protocol.Insert {
					ops = append(ops, protocol.Operation{Table: t.Name, RowID: k, Command: protocol.Delete})
				}
			}
			if err := apply(ops); err != nil {
				return err
			}
			c.progress(dbsync.Progress{Op: "reset", Phase: "gone", Bytes: res.Bytes, Rows: res.Rows})
		}
	}
	deleted := map[string][]string{}
	for _, o := range local.Objs() {
		if t := c.reg.Table(o.Table); t != nil && t.Direction.Pulled() && local.Op(o).Command == protocol.Delete {
			deleted[o.Table] = append(deleted[o.Table], o.Key)
		}
	}
	var ops []protocol.Operation
	for _, t := range tables {
		has, err := keys.server(ctx, t.Name, deleted[t.Name])
		if err != nil {
			return err
		}
		for _, k := range deleted[t.Name] {
			if !has[k] {
				ops = append(ops, protocol.Operation{Table: t.Name, RowID: k, Command: protocol.Delete})
			}
		}
	}
	return apply(ops)
}

// finishReset closes a reset: the references of the pulled tables must
// hold; the node's versions and pushed log entries give way to the
// server's version; the sequences of integer keys move past the keys
// written; capture resumes. token is the version's ("": none given).
func (c *Client) finishReset(ctx context.Context, tx bun.Tx, version int64, token string, written map[string]bool, local *merge.Local, res *ResetResult) error {
	if err := store.RunDeleteActions(ctx, tx, c.reg, c.pulledTables()); err != nil {
		return err
	}
	if err := dialect.ForeignKeyCheck(ctx, tx, c.pulledTables()); err != nil {
		return err
	}
	if err := c.recordSchema(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.NewDelete().Model((*models.Operation)(nil)).Where("version_id IS NOT NULL").Exec(ctx); err != nil {
		return fmt.Errorf("client: reset the log: %w", err)
	}
	if _, err := tx.NewDelete().Model((*models.Version)(nil)).Where("1 = 1").Exec(ctx); err != nil {
		return fmt.Errorf("client: reset the versions: %w", err)
	}
	if _, err := tx.NewDelete().Model((*models.VersionToken)(nil)).Where("1 = 1").Exec(ctx); err != nil {
		return fmt.Errorf("client: reset the versions: %w", err)
	}
	if version > 0 {
		if err := recordVersion(ctx, tx, version, nil, c.cfg.Now().UTC(), token); err != nil {
			return fmt.Errorf("client: reset the versions: %w", err)
		}
	}
	for name := range written {
		if t := c.reg.Table(name); t.KeyKind == protocol.KeyInt {
			if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
				return err
			}
		}
	}
	res.VersionID = version
	res.Kept = local.Len()
	return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
}

// resetOnce runs a reset for Sync the first time the server answers
// reset_required, recording it in res; a second answer is returned.
func (c *Client) resetOnce(ctx context.Context, res *SyncResult, err error) error {
	if !errors.Is(err, dbsync.ErrResetRequired) || res.Reset != nil {
		return err
	}
	c.log.InfoContext(ctx, "client: the server trimmed the versions the node holds; resetting", slog.String("answer", err.Error()))
	r, rerr := c.reset(ctx)
	if rerr != nil {
		return fmt.Errorf("client: reset after %w: %w", err, rerr)
	}
	res.Reset = r
	res.VersionID = r.VersionID
	return nil
}
