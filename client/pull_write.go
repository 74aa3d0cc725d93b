package client

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// applyPlan writes a merge plan: deletes (children first), parks (holders
// of unique values the writes take, moved out of the way in place: never
// deleted, so ON DELETE actions cannot touch their children), writes
// (parents first), then the log edits (logPlan). A row the plan deletes
// while rows it does not delete still reference it (a child moved away
// from a deleted parent, written later in this chunk or a later one) is
// held back by late (store.LateDeletes), and deleted at the end of the
// pull (late.Finish, the caller's): deleted first, its ON DELETE CASCADE
// (PostgreSQL) would delete the child and the child's own children, and
// the write would bring back the child alone. A held row a write takes a
// unique value of is parked first.
func (c *Client) applyPlan(ctx context.Context, tx bun.Tx, plan *merge.Plan, late *store.LateDeletes, written map[string]bool, touched *store.Touched) error {
	for _, r := range plan.Respells {
		if err := c.respellRow(ctx, tx, r); err != nil {
			return err
		}
	}
	deletes := map[*dbsync.Table][]string{}
	for _, o := range plan.Deletes {
		t := c.reg.Table(o.Table)
		deletes[t] = append(deletes[t], o.Key)
		touched.Deleted(t, o.Key)
	}
	writes := map[string][]reflect.Value{}
	for _, w := range plan.Writes {
		t := c.reg.Table(w.Table)
		ptr, err := t.Codec().DecodeRow(w.Row)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		writes[w.Table] = append(writes[w.Table], ptr.Elem())
	}
	if err := c.respellHeld(ctx, tx, writes, late); err != nil {
		return err
	}
	// The node's pushed rows of push-only tables referencing the rows
	// deleted go with them, unlogged (pushedDependents), unless one has a
	// pending change (the deletes' references then refuse the apply):
	// the server deleted a row only once no row it holds referenced it,
	// and, with scopes, a reset drops the rows the node may no longer
	// read while the server keeps the node's rows referencing them.
	for t, keys := range deletes {
		pushed, refused, err := c.pushedDependents(ctx, tx, t, keys)
		if err != nil {
			return err
		}
		if len(refused) == 0 {
			if err := c.deletePushed(ctx, tx, pushed, touched); err != nil {
				return err
			}
		}
	}
	if err := late.Delete(ctx, tx, c.reg, deletes); err != nil {
		return err
	}
	tables := c.reg.Tables()
	parks := map[string][]string{}
	for _, o := range plan.Parks {
		parks[o.Table] = append(parks[o.Table], o.Key)
	}
	for _, t := range tables {
		if err := late.Park(ctx, tx, t, writes[t.Name]); err != nil {
			return err
		}
		if err := store.Park(ctx, tx, t, parks[t.Name], writes[t.Name]); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if rows := writes[t.Name]; len(rows) > 0 {
			if err := store.Write(ctx, tx, t, rows, true); err != nil {
				if dialect.IsCardinalityViolation(err) {
					return collapsedRows(t.Name)
				}
				return err
			}
			if err := checkDistinctRows(ctx, tx, t, rows); err != nil {
				return err
			}
			written[t.Name] = true
			for _, r := range rows {
				touched.WroteRow(c.reg, t, r)
			}
		}
	}
	return c.logPlan(ctx, tx, plan)
}

// respellHeld applies K2 across chunks: a row an earlier chunk deleted
// that rows still reference (held back, late) and that this chunk writes
// under another spelling of its key (the server respelled it, and its
// delete and write came in two chunks) is respelled and kept, as when
// one chunk brings both (merge.Merger.Chunk): deleted at the end of the
// pull, it would take the write with it, and the rows referencing it
// would fail the pull every time.
func (c *Client) respellHeld(ctx context.Context, tx bun.Tx, writes map[string][]reflect.Value, late *store.LateDeletes) error {
	for name, rows := range writes {
		t := c.reg.Table(name)
		if c.keyEq[name] == "" || !late.HeldIn(t) {
			continue
		}
		keys := make([]string, len(rows))
		for i, strct := range rows {
			keys[i] = t.Codec().KeyOf(strct)
		}
		held, err := store.HeldSpellings(ctx, tx, t, keys)
		if err != nil {
			return err
		}
		for k, h := range held {
			if !late.Held(t, h) {
				continue
			}
			if err := c.respellRow(ctx, tx, merge.Respell{Obj: merge.Obj{Table: name, Key: h}, To: k}); err != nil {
				return err
			}
			late.Release(t, h)
		}
	}
	return nil
}

// respellRow gives the node's row r.Obj the key r.To, another spelling
// of its key that the node's database takes for the same row (merge.md
// K2), in the table, in the rows that reference it (r.References) and
// in the node's pending log, as K1 moves a row (moveRow). Capture is off: nothing is
// logged.
func (c *Client) respellRow(ctx context.Context, tx bun.Tx, r merge.Respell) error {
	t := c.reg.Table(r.Table)
	if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(t.Name)).Set("? = ?", bun.Ident(t.PK.Name), r.To).
		Where("? = ?", bun.Ident(t.PK.Name), r.Key).Exec(ctx); err != nil {
		return fmt.Errorf("respell %s %q as %q: %w", t.Name, r.Key, r.To, err)
	}
	for _, ch := range c.reg.Children(t.Name) {
		if !r.References {
			break // the server respelled the row: its references keep their spelling
		}
		if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(ch.Table.Name)).Set("? = ?", bun.Ident(ch.FK.Column), r.To).
			Where("? = ?", bun.Ident(ch.FK.Column), r.Key).Exec(ctx); err != nil {
			return fmt.Errorf("respell references to %s %q: %w", t.Name, r.Key, err)
		}
	}
	if _, err := tx.NewUpdate().Model((*models.Operation)(nil)).Set("row_id = ?", r.To).
		Where("content_type_id = ? AND row_id = ? AND version_id IS NULL", t.ContentTypeID, r.Key).Exec(ctx); err != nil {
		return fmt.Errorf("respell the log of %s %q: %w", t.Name, r.Key, err)
	}
	return nil
}

// checkDistinctRows refuses, once they are written, rows of t with
// distinct keys (decodeChunk checks them byte for byte) that the
// database took for fewer rows: text keys under a collation that ignores
// what tells them apart (SQLite's NOCASE, a nondeterministic ICU one),
// which an upsert wrote into one row, the last copy winning.
func checkDistinctRows(ctx context.Context, tx bun.Tx, t *dbsync.Table, rows []reflect.Value) error {
	if t.KeyKind != protocol.KeyText {
		return nil // integer and UUID keys are compared canonical
	}
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = t.Codec().KeyOf(r)
	}
	n, err := store.CountRows(ctx, tx, t, keys)
	if err != nil {
		return err
	}
	if n < len(keys) {
		return collapsedRows(t.Name)
	}
	return nil
}

// collapsedRows is the error of an answer holding a row of table twice,
// under keys the node's database takes for one.
func collapsedRows(table string) error {
	return fmt.Errorf("%w: the answer holds a row of %s twice, under keys that differ only where the key column's collation takes them for one", dbsync.ErrBadResponse, table)
}

// logPlan makes the plan's edits of the node's pending log: the entries it
// drops, and those it adds, at the head (re-created parents, before every
// pending entry, parents first) or at the tail.
func (c *Client) logPlan(ctx context.Context, tx bun.Tx, plan *merge.Plan) error {
	if err := oplog.DeleteOperations(ctx, tx, plan.DropOrders); err != nil {
		return err
	}
	if len(plan.AddOps) == 0 {
		return nil
	}
	var head, tail []models.Operation
	for _, a := range plan.AddOps {
		op := models.Operation{RowID: a.Key, ContentTypeID: c.reg.Table(a.Table).ContentTypeID, Command: a.Command}
		if a.Head {
			head = append(head, op)
		} else {
			tail = append(tail, op)
		}
	}
	if len(head) > 0 {
		var min *int64
		if err := tx.NewRaw(`SELECT MIN("order") FROM sync_operations`).Scan(ctx, &min); err != nil {
			return err
		}
		next := int64(0) // head orders are negative: 0 would mean "assign one"
		if min != nil && *min < 0 {
			next = *min
		}
		sort.SliceStable(head, func(i, j int) bool {
			return c.reg.Table(tableOf(c.reg, head[i])).Rank() < c.reg.Table(tableOf(c.reg, head[j])).Rank()
		})
		for i := len(head) - 1; i >= 0; i-- {
			next--
			head[i].Order = next
		}
		if _, err := tx.NewInsert().Model(&head).Exec(ctx); err != nil {
			return fmt.Errorf("log re-created parents: %w", err)
		}
	}
	if len(tail) > 0 {
		if _, err := tx.NewInsert().Model(&tail).Exec(ctx); err != nil {
			return fmt.Errorf("log merge results: %w", err)
		}
	}
	return nil
}

func tableOf(reg *dbsync.Registry, op models.Operation) string {
	return reg.ByContentType(op.ContentTypeID).Name
}
