package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// RepairOptions tune Repair.
type RepairOptions struct {
	// Force discards local changes that were never pushed. Without it,
	// Repair refuses with dbsync.ErrPendingChanges when there are some in
	// the pulled tables (Client.Pending lists them), or when rows of push-only tables with changes
	// not pushed reference rows the repair does not bring back (then
	// with a *dbsync.ScopeError naming them: dropDanglingPushed).
	Force bool
}

// RepairResult describes a repair.
type RepairResult struct {
	// VersionID is the server version the node now holds.
	VersionID int64
	// Rows counts the rows written, Bytes the bytes received.
	Rows  int64
	Bytes int64
	// Discarded counts the unpushed local operations that were dropped
	// (only with Force), as Client.Pending counts them: one per changed
	// row, none for a row inserted and deleted since.
	Discarded int
}

// Repair replaces the node's copy of every pulled table by the server's,
// as python-sync-db's repair: for a node whose database is damaged, or
// that holds versions the server lost (dbsync.ErrRepairNeeded). A node
// the server's trim left behind (dbsync.ErrResetRequired) resets instead
// (Reset), which keeps its unpushed changes. The server's snapshot is
// downloaded (into memory, into a temporary file beyond 1 MiB) in bounded
// memory, up to Config.MaxDownloadBytes (beyond, dbsync.ErrTooLarge),
// then applied in one transaction: the local tables change entirely or not
// at all. Push-only tables are left alone, but for the node's rows
// referencing a row the repair does not bring back (dropDanglingPushed):
// pushed ones are deleted, and ones with changes not pushed refuse the
// repair, naming them, unless opts.Force discards them.
//
// Step by step: the unpushed changes it would lose are counted
// (discarded), a push whose answer was lost is settled with the server
// (settleLostPush), the snapshot is downloaded (download), then
// applied (applyRepair).
func (c *Client) Repair(ctx context.Context, opts *RepairOptions) (res *RepairResult, err error) {
	if opts == nil {
		opts = &RepairOptions{}
	}
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	start := time.Now()
	ev := dbsync.Event{Op: "repair"}
	defer func() {
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Rows, ev.Bytes = res.VersionID, res.Rows, res.Bytes
		}
		c.emit(ctx, ev, start)
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	pending, err := c.pendingOps(ctx)
	if err != nil {
		return nil, err
	}
	if discard := c.discarded(pending); discard > 0 && !opts.Force {
		return nil, repairWouldLose(discard)
	}
	attempt, status, err := c.settleLostPush(ctx, node)
	if err != nil {
		return nil, err
	}
	stream, err := c.tr.Repair(ctx, c.call(node))
	if err != nil {
		return nil, err
	}
	answer, size, err := c.download(ctx, stream, "repair")
	if err != nil {
		return nil, err
	}
	defer answer.discard()
	res = &RepairResult{Bytes: size}
	err = foreignKey(dialect.ApplyTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		// The application may have written since the count above (while
		// the snapshot downloaded): count again, its writes kept out (the
		// transaction holds SQLite's write lock; the tables are locked on
		// PostgreSQL), so that no change goes without Force, nor uncounted.
		if err := c.lockForMerge(ctx, tx); err != nil {
			return err
		}
		pending, err := c.pendingOpsIn(ctx, tx)
		if err != nil {
			return err
		}
		discard := c.discarded(pending)
		if discard > 0 && !opts.Force {
			return repairWouldLose(discard)
		}
		res.Discarded = discard
		if status != nil && status.VersionID != nil {
			// The push was applied: its operations leave the log as after
			// an answered push (those of push-only tables would stay
			// pending through clearPulled, and be pushed again).
			if _, err := pushed(ctx, tx, node.NodeID, attempt, *status.VersionID, "", c.cfg.Now().UTC()); err != nil {
				return err
			}
		}
		return c.applyRepair(ctx, tx, answer, opts.Force, res)
	}))
	if err != nil {
		return nil, err
	}
	c.schemaRecorded = true
	c.progress(dbsync.Progress{Op: "repair", Phase: "done", Bytes: size, Rows: res.Rows})
	c.log.InfoContext(ctx, "client: repaired", slog.Int64("version", res.VersionID), slog.Int64("rows", res.Rows))
	return res, nil
}

// settleLostPush settles the node's push whose answer was lost, if any
// (nil attempt: none), as a pull does (merge.md X2): a pull request naming
// it, read up to its header, has the server report it applied or mark it
// abandoned, so that no copy still on its way is applied later. Repair
// and Reset call it before they take the server's rows: a copy applied
// after that snapshot would be a version of the node whose operations the
// node's pulls leave out (merge.md A5), so the node would never hold its
// rows, and a copy applied after the node pushed the same rows again
// would undo that push on the server. The status is the header's; nil
// when the pull is answered reset_required or repair_needed, which need
// no settling: a copy based below the log floor, or on a version the
// server does not have, is never applied.
func (c *Client) settleLostPush(ctx context.Context, node *models.Node) (*models.PushAttempt, *protocol.PushStatus, error) {
	attempt, status, _, err := c.askLostPush(ctx, node)
	return attempt, status, err
}

// askLostPush is settleLostPush that also returns the pull's refusal
// (reset_required or repair_needed; status nil then).
func (c *Client) askLostPush(ctx context.Context, node *models.Node) (*models.PushAttempt, *protocol.PushStatus, error, error) {
	req, attempt, err := c.pullRequest(ctx)
	if err != nil || attempt == nil {
		return nil, nil, nil, err
	}
	stream, err := c.requestPull(ctx, node, req)
	switch {
	case errors.Is(err, dbsync.ErrResetRequired), errors.Is(err, dbsync.ErrRepairNeeded):
		return attempt, nil, err, nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("client: settle push %s: %w", attempt.PushID, err)
	}
	guard := answerGuard(stream, func() { _ = stream.Close() }, c.stallTimeout(), c.answerTimeout())
	defer guard.Close()
	head, err := c.newMessages(guard).header("pull")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client: settle push %s: %w", attempt.PushID, err)
	}
	if head.Push == nil || head.Push.PushID != attempt.PushID {
		return nil, nil, nil, fmt.Errorf("%w: the server did not report on push %s", dbsync.ErrBadResponse, attempt.PushID)
	}
	return attempt, head.Push, nil, nil
}

// discarded counts, of the node's unpushed operations (pendingOps: as
// Pending counts them, a row inserted and deleted since is no change
// lost), those on pulled tables: what a repair loses.
func (c *Client) discarded(pending []models.Operation) int {
	pulled := c.pulledContentTypes()
	n := 0
	for _, op := range pending {
		if pulled[op.ContentTypeID] {
			n++
		}
	}
	return n
}

// repairWouldLose is Repair's refusal, without Force, of a node whose
// pulled tables have discard unpushed changes.
func repairWouldLose(discard int) error {
	return fmt.Errorf("%w: %d operations would be lost; sync them (Sync, or Reset when a push is answered reset_required) or repair with Force", dbsync.ErrPendingChanges, discard)
}

// applyRepair applies a downloaded repair stream in tx: the header must
// name the tables the node pulls; the node's copy of them and its sync
// state are cleared (clearPulled); each rows line is written
// (writeRepairRows); the end line checks what arrived (finishRepair).
func (c *Client) applyRepair(ctx context.Context, tx bun.Tx, stream io.Reader, force bool, res *RepairResult) error {
	msgs := c.newMessages(stream)
	head, err := msgs.header("repair")
	if err != nil {
		return err
	}
	if err := c.checkRepairTables(head); err != nil {
		return err
	}
	if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
		return err
	}
	restore, err := c.keepPushOnly(ctx, tx)
	if err != nil {
		return err
	}
	if err := c.clearPulled(ctx, tx); err != nil {
		return err
	}
	for {
		msg, err := msgs.next()
		if err != nil {
			return err
		}
		switch msg.Type {
		case protocol.MsgRows:
			if err := c.writeRepairRows(ctx, tx, msg, res); err != nil {
				return err
			}
		case protocol.MsgEnd:
			if err := restore(ctx); err != nil {
				return err
			}
			if err := c.dropDanglingPushed(ctx, tx, force, res); err != nil {
				return err
			}
			return c.finishRepair(ctx, tx, msg, *head.LatestVersionID, head.LatestVersionToken, head.MaxKeys, res)
		default:
			return fmt.Errorf("%w: unexpected %q line in a repair stream", dbsync.ErrBadResponse, msg.Type)
		}
	}
}

// dropDanglingPushed deletes, unlogged, after a repair replaced the
// pulled tables, the node's rows of push-only tables that reference a row
// the repair did not bring back, tables referenced first, so that the
// rows referencing those go too (in a table referencing itself, down the
// tree). A repair leaves push-only tables alone, but such a row
// references a row the node may no longer read (a server with scopes
// keeps the row, and the node's visit to it, while the node lost its
// access), or one the server deleted: kept, it would reference a missing
// row (a PostgreSQL node refuses the repair for it, a SQLite node keeps
// it dangling). A pushed row (no pending change) goes, the server keeps
// it (merge.md A6). A row with a pending change cannot be pushed any
// more (its parent is gone for the node): with force, its pending
// operations go with it and are counted in res.Discarded; without,
// nothing is lost silently: the repair fails with dbsync.ErrPendingChanges
// and a *dbsync.ScopeError naming those rows, children first, for the
// application to give them up (Client.DiscardPending) and repair again.
func (c *Client) dropDanglingPushed(ctx context.Context, tx bun.Tx, force bool, res *RepairResult) error {
	var pending []protocol.ScopeEntry
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() {
			continue
		}
		var dropped []string // with pending changes
		// Every foreign key again while rows go: in a table referencing
		// itself, the rows under those gone dangle now, whichever key
		// came first.
		for gone := true; gone; {
			gone = false
			for _, fk := range t.ForeignKeys {
				parent := c.reg.Table(fk.RefTable)
				if parent == nil {
					continue
				}
				var keys []string
				if err := tx.NewRaw("SELECT CAST(c.? AS TEXT) FROM ? AS c WHERE c.? IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ? AS p WHERE p.? = c.?)",
					bun.Ident(t.PK.Name), bun.Ident(t.Name), bun.Ident(fk.Column), bun.Ident(parent.Name), bun.Ident(parent.PK.Name), bun.Ident(fk.Column)).
					Scan(ctx, &keys); err != nil {
					return fmt.Errorf("client: find the rows of %s referencing missing %s: %w", t.Name, parent.Name, err)
				}
				if len(keys) == 0 {
					continue
				}
				gone = true
				pend, err := pendingRows(ctx, tx, t, keys)
				if err != nil {
					return err
				}
				for _, k := range keys {
					if pend[k] {
						dropped = append(dropped, k)
						pending = append(pending, protocol.ScopeEntry{Table: t.Name, PK: k})
					}
				}
				// Rows with pending changes are deleted too, here: the
				// rows referencing them are found (and named) below; a
				// refusal rolls the repair back.
				if err := store.Delete(ctx, tx, t, keys); err != nil {
					return err
				}
			}
		}
		if force {
			n, err := c.dropPending(ctx, tx, t, dropped)
			if err != nil {
				return err
			}
			res.Discarded += n
		}
	}
	if len(pending) > 0 && !force {
		slices.Reverse(pending)
		return fmt.Errorf("%w: rows of push-only tables not pushed reference rows the repair does not bring back "+
			"(give them up with DiscardPending, or repair with Force): %w", dbsync.ErrPendingChanges, &dbsync.ScopeError{Entries: pending})
	}
	return nil
}

// dropPending deletes the pending operations of t's rows keys, and
// returns how many.
func (c *Client) dropPending(ctx context.Context, tx bun.Tx, t *dbsync.Table, keys []string) (int, error) {
	n := 0
	for start := 0; start < len(keys); start += store.Batch {
		r, err := tx.NewDelete().Model((*models.Operation)(nil)).
			Where("version_id IS NULL AND content_type_id = ? AND row_id IN (?)", t.ContentTypeID, bun.List(keys[start:min(start+store.Batch, len(keys))])).Exec(ctx)
		if err != nil {
			return 0, fmt.Errorf("client: discard pending changes of %s: %w", t.Name, err)
		}
		m, err := r.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("client: discard pending changes of %s: %w", t.Name, err)
		}
		n += int(m)
	}
	return n, nil
}

// keepPushOnly saves, on a PostgreSQL node, the rows of the push-only
// tables that reference pulled tables (or such push-only tables), each
// in a temporary table of tx, and returns what puts them back as they
// were (restore; a no-op on SQLite). A repair empties the pulled tables
// (clearPulled), and their foreign keys' ON DELETE actions (CASCADE, SET
// NULL), which PostgreSQL runs at once, deferred constraints or not,
// would delete or change the node's push-only rows, those not pushed yet
// included (lost silently: the next push's compression drops an insert
// whose row is gone). SQLite runs none: ApplyTx switches its foreign
// keys off. restore inserts the rows the actions deleted and sets back
// the columns they changed, parents first, after the repair's rows are
// written; dropDanglingPushed then settles those referencing a row the
// repair did not bring back.
func (c *Client) keepPushOnly(ctx context.Context, tx bun.Tx) (restore func(context.Context) error, err error) {
	if dialect.ChecksReferencesLater(tx) {
		return func(context.Context) error { return nil }, nil
	}
	kept := map[string]bool{}
	type saved struct {
		t    *dbsync.Table
		tmp  string
		cols string // the columns kept: all but generated ones (the database computes them)
	}
	var all []saved
	for _, t := range c.reg.Tables() { // parents first
		if t.Direction.Pulled() {
			continue
		}
		refers := false
		for _, fk := range t.ForeignKeys {
			if p := c.reg.Table(fk.RefTable); p != nil && (p.Direction.Pulled() || kept[p.Name]) {
				refers = true
			}
		}
		if !refers {
			continue
		}
		kept[t.Name] = true
		info, err := dialect.Columns(ctx, tx, t.Name)
		if err != nil {
			return nil, err
		}
		var names []string
		for col, ci := range info {
			if !ci.Generated {
				names = append(names, dialect.QuoteIdent(col))
			}
		}
		slices.Sort(names)
		cols := strings.Join(names, ", ")
		name := fmt.Sprintf("dbsync_repair_keep_%d", len(all))
		for _, q := range []string{
			"DROP TABLE IF EXISTS pg_temp." + name,
			"CREATE TEMP TABLE " + name + " ON COMMIT DROP AS SELECT " + cols + " FROM " + string(t.Schema().SQLName),
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("client: keep the rows of %s through the repair: %w", t.Name, err)
			}
		}
		all = append(all, saved{t: t, tmp: "pg_temp." + name, cols: cols})
	}
	cleared := c.pulledTables()
	for _, sv := range all {
		cleared = append(cleared, sv.t.Name)
	}
	untracked, err := keepUntracked(ctx, tx, c.reg, cleared, c.log)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		for _, sv := range all {
			t := sv.t
			var set []string
			for _, col := range t.Columns {
				if col.Name != t.PK.Name {
					q := dialect.QuoteIdent(col.Name)
					set = append(set, q+" = EXCLUDED."+q)
				}
			}
			action := "NOTHING"
			if len(set) > 0 {
				action = "UPDATE SET " + strings.Join(set, ", ")
			}
			q := "INSERT INTO " + string(t.Schema().SQLName) + " (" + sv.cols + ") OVERRIDING SYSTEM VALUE SELECT " + sv.cols + " FROM " + sv.tmp +
				" ON CONFLICT (" + dialect.QuoteIdent(t.PK.Name) + ") DO " + action
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("client: restore the rows of %s after the repair: %w", t.Name, err)
			}
			if _, err := tx.ExecContext(ctx, "DROP TABLE "+sv.tmp); err != nil {
				return fmt.Errorf("client: restore the rows of %s after the repair: %w", t.Name, err)
			}
		}
		return untracked(ctx)
	}, nil
}

// checkRepairTables refuses a repair stream whose header does not name
// the tables the node pulls.
func (c *Client) checkRepairTables(head *protocol.Message) error {
	tables := c.pulledTables()
	got, want := slices.Clone(head.Tables), slices.Clone(tables)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%w: the server repairs tables %v, the node pulls %v", dbsync.ErrSchemaMismatch, head.Tables, tables)
	}
	return nil
}

// clearPulled empties the pulled tables (children first) and the node's
// sync state: its versions, its push attempt, and its log but for the
// pending entries of push-only tables.
func (c *Client) clearPulled(ctx context.Context, tx bun.Tx) error {
	all := c.reg.Tables()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Direction.Pulled() {
			if err := store.DeleteAll(ctx, tx, all[i]); err != nil {
				return err
			}
		}
	}
	pulled := c.pulledContentTypes()
	cts := make([]int64, 0, len(pulled))
	for ct := range pulled {
		cts = append(cts, ct)
	}
	if _, err := tx.NewDelete().Model((*models.Operation)(nil)).
		Where("version_id IS NOT NULL OR content_type_id IN (?)", bun.List(cts)).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.NewDelete().Model((*models.Version)(nil)).Where("1 = 1").Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.NewDelete().Model((*models.VersionToken)(nil)).Where("1 = 1").Exec(ctx); err != nil {
		return err
	}
	// A push still in flight was settled first (settleLostPush).
	_, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("1 = 1").Exec(ctx)
	return err
}

// writeRepairRows writes the rows of one rows line.
func (c *Client) writeRepairRows(ctx context.Context, tx bun.Tx, msg *protocol.Message, res *RepairResult) error {
	t := c.reg.Table(msg.Table)
	if t == nil || !t.Direction.Pulled() {
		return fmt.Errorf("%w: repair rows for table %q", dbsync.ErrBadResponse, msg.Table)
	}
	rows := make([]reflect.Value, len(msg.Rows))
	keys := make([]string, len(msg.Rows))
	for i, raw := range msg.Rows {
		row, err := protocol.ParseRow(raw)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		ptr, err := t.Codec().DecodeRow(row)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		rows[i] = ptr.Elem()
		keys[i] = t.Codec().KeyOf(rows[i])
	}
	// The tables were emptied: a row whose key is taken came before, in
	// this line or an earlier one.
	inserted, err := store.WriteNew(ctx, tx, t, rows)
	if err != nil {
		return err
	}
	if k, ok := repeated(keys, inserted); ok {
		return duplicateRow("repair", t.Name, k)
	}
	res.Rows += int64(len(rows))
	c.progress(dbsync.Progress{Op: "repair", Phase: "apply", Bytes: res.Bytes, Rows: res.Rows})
	return nil
}

// repeated returns a key of keys an earlier row took: one listed twice,
// or one the write did not insert (inserted holds those it did).
func repeated(keys []string, inserted map[string]bool) (string, bool) {
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] || !inserted[k] {
			return k, true
		}
		seen[k] = true
	}
	return "", false
}

// duplicateRow is the error of an answer (op's) that holds the row of
// table with key twice, where the protocol sends each row once: the
// answer is refused, nothing applied.
func duplicateRow(op, table, key string) error {
	return fmt.Errorf("%w: the %s answer holds row %s of %s twice", dbsync.ErrBadResponse, op, key, table)
}

// finishRepair closes a repair at its end line: the row count it announces
// must be the one that arrived; the replaced tables' references must hold;
// the node now holds version (none for 0); the sequences of integer keys
// move past the keys written and the server's greatest keys (serverMax,
// the header's: merge.md K1); capture resumes. token is the version's
// ("": none given).
func (c *Client) finishRepair(ctx context.Context, tx bun.Tx, end *protocol.Message, version int64, token string, serverMax map[string]int64, res *RepairResult) error {
	if end.RowCount != res.Rows {
		return fmt.Errorf("%w: the stream announced %d rows, %d arrived", dbsync.ErrBadResponse, end.RowCount, res.Rows)
	}
	// The tables were replaced whole: act on and check them whole.
	if err := store.RunDeleteActions(ctx, tx, c.reg, c.pulledTables()); err != nil {
		return err
	}
	if err := dialect.ForeignKeyCheck(ctx, tx, c.pulledTables()); err != nil {
		return err
	}
	if version > 0 {
		if err := recordVersion(ctx, tx, version, nil, c.cfg.Now().UTC(), token); err != nil {
			return err
		}
	}
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() && t.KeyKind == protocol.KeyInt {
			if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
				return err
			}
		}
	}
	// A row the server deleted is not among the rows written: without
	// this, the node's next insert may take its key (advanceSequences).
	if err := c.advanceSequences(ctx, tx, nil, serverMax); err != nil {
		return err
	}
	res.VersionID = version
	if err := c.recordSchema(ctx, tx); err != nil {
		return err
	}
	return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
}

// pulledTables names the tables the node pulls, in registry order.
func (c *Client) pulledTables() []string {
	var out []string
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() {
			out = append(out, t.Name)
		}
	}
	return out
}

// pulledContentTypes is the set of the content types of the pulled tables.
func (c *Client) pulledContentTypes() map[int64]bool {
	out := map[int64]bool{}
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() {
			out[t.ContentTypeID] = true
		}
	}
	return out
}
