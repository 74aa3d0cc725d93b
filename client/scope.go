package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// Partial sync, the node's side. A server with scopes (server.Scopes) names
// in each pull header the tables the node holds in part; the node's next
// pulls list the keys it holds of them (heldKeys), and the server answers
// the difference with its scope: scope_out lines (rows that left: deleted
// here without being logged) and scope_in lines (rows that entered:
// written without being logged). A pull that did not know (the node's
// first, or its first after server.Config.Scopes made more tables scoped)
// is refused with dbsync.ErrHeldKeysNeeded and asked again at once with
// the keys of every pulled table. A table the rules made global since the
// last header is listed so once: the server answers the rows of it the
// node lacks (scope_in), and its header no longer names the table.

// DiscardPending drops the node's unpushed changes to the given rows, as
// named by a *dbsync.ScopeError: changes to rows that left the node's
// scope, which its pulls refuse to lose silently, and writes the server
// refused (merge.md S2, S5). A row the node created and never pushed is
// deleted. Each other row takes the server's values, read with a query,
// with the rows those reference that the node lacks (merge.md D2: a row
// the node deleted and has not pushed comes back, its delete dropped); so
// DiscardPending needs the server for such rows, and changes nothing when
// it cannot be reached. A row the server no longer lets the node read is
// deleted (it stays deleted), with the local rows referencing it, so that
// they arrive with the server's values if they come back into the scope
// (dropUnread; one whose referencing rows have pending changes keeps its
// local state until the next pull settles them). Nothing of this is
// logged. Rows of unknown tables are skipped. A push whose answer was lost
// is settled with the server first, as a pull settles it (merge.md X2),
// or, when the server refuses that pull (dbsync.ErrResetRequired,
// dbsync.ErrRepairNeeded), as a reset settles it (push-status); without
// push-status (a Transport that is not a ChunkedTransport) DiscardPending
// then returns the refusal and changes nothing: Reset or Repair settles
// the push.
func (c *Client) DiscardPending(ctx context.Context, rows []protocol.ScopeEntry) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.mu.unlock()
	return c.discardPending(ctx, rows)
}

// discardPending is DiscardPending, called holding c.mu.
func (c *Client) discardPending(ctx context.Context, rows []protocol.ScopeEntry) error {
	// dependents reads which tables the node holds in part.
	if err := c.loadScoped(ctx); err != nil {
		return err
	}
	// A copy of a push whose answer was lost, applied after the changes
	// are given up, would be a version of the node whose operations its
	// pulls leave out (merge.md A5): settled first, it is in the server's
	// rows read below, or never applied. Its answer is recorded as a
	// pull records it (settlePush): applied, its operations are no longer
	// pending, so a row it inserted is not taken below for one the node
	// created and never pushed, and deleted here while the server holds
	// it (the node's pulls leave its own versions out).
	if len(rows) > 0 {
		node, err := c.node(ctx, c.db)
		if err != nil {
			return err
		}
		attempt, status, refused, err := c.askLostPush(ctx, node)
		if err != nil {
			return err
		}
		if refused != nil {
			// The pull that would settle it is refused (the node is
			// behind the log floor, or the server lost versions): no
			// copy of the push can be applied from now on, but one may
			// have been before. Push-status tells, as for a reset
			// (resetPushStatus). Taken for not applied, the push's
			// operations are given up below, and the rows it inserted,
			// deleted on the node alone (its pulls leave its own
			// versions out), and the attempt, left recorded, covers the
			// node's later writes.
			if status, err = c.lostPushStatus(ctx, node, attempt); err != nil {
				return fmt.Errorf("client: discard pending changes: push %s whose answer was lost cannot be settled: %w", attempt.PushID, errors.Join(refused, err))
			}
		}
		if status != nil {
			if err := c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				if err := c.owned(ctx, tx); err != nil {
					return err
				}
				return c.settlePush(ctx, tx, node, attempt, status, &PullResult{})
			}); err != nil {
				return err
			}
		}
	}
	var named, created []merge.Obj
	for _, r := range rows {
		t := c.reg.Table(r.Table)
		if t == nil {
			continue
		}
		var first []models.Operation
		if err := c.db.NewSelect().Model(&first).Column("command", "order").
			Where("version_id IS NULL AND content_type_id = ? AND row_id = ?", t.ContentTypeID, r.PK).
			OrderExpr(`"order" ASC`).Limit(1).Scan(ctx); err != nil {
			return fmt.Errorf("client: read pending changes of %s %s: %w", r.Table, r.PK, err)
		}
		if len(first) == 0 {
			continue
		}
		o := merge.Obj{Table: t.Name, Key: r.PK}
		if first[0].Command == models.Insert && first[0].Order >= 0 {
			created = append(created, o)
		} else {
			named = append(named, o)
		}
	}
	fetched, err := c.serverRows(ctx, named)
	if err != nil {
		return err
	}
	return c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
			return err
		}
		drop := append(slices.Clone(created), named...)
		for _, t := range c.reg.Tables() {
			for key := range fetched[t] {
				drop = append(drop, merge.Obj{Table: t.Name, Key: key})
			}
		}
		for _, o := range drop {
			t := c.reg.Table(o.Table)
			if _, err := tx.NewDelete().Model((*models.Operation)(nil)).
				Where("version_id IS NULL AND content_type_id = ? AND row_id = ?", t.ContentTypeID, o.Key).Exec(ctx); err != nil {
				return fmt.Errorf("client: discard pending changes of %s %s: %w", o.Table, o.Key, err)
			}
		}
		for _, o := range created {
			if err := store.Delete(ctx, tx, c.reg.Table(o.Table), []string{o.Key}); err != nil {
				return err
			}
		}
		// A named row the server no longer lets the node read goes too,
		// with the local rows referencing it (its next pull would delete
		// them), so that when it comes back into the scope it is not held
		// and arrives with the server's values (dropUnread). Children's
		// tables first: a named child deleted frees its named parent.
		tables := c.reg.Tables()
		for i := len(tables) - 1; i >= 0; i-- {
			if err := c.dropUnread(ctx, tx, tables[i], named, fetched[tables[i]]); err != nil {
				return err
			}
		}
		tc := &store.Touched{}
		for _, t := range c.reg.Tables() { // parents first
			if len(fetched[t]) == 0 {
				continue
			}
			rows := slices.Collect(maps.Values(fetched[t]))
			if err := store.Write(ctx, tx, t, rows, true); err != nil {
				return err
			}
			for _, r := range rows {
				tc.WroteRow(c.reg, t, r)
			}
		}
		if err := store.CheckReferences(ctx, tx, c.reg, tc); err != nil {
			return err
		}
		return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
	})
}

// lostPushStatus asks the server, through push-status, whether attempt
// was applied, once the pull that would settle it was refused: the
// status of a push not applied says so (no version), for it never will
// be. Without push-status (a transport that is not a ChunkedTransport)
// it fails.
func (c *Client) lostPushStatus(ctx context.Context, node *models.Node, attempt *models.PushAttempt) (*protocol.PushStatus, error) {
	if c.tr.chunked == nil {
		return nil, errors.New("the transport cannot ask a push's status (not a ChunkedTransport): Reset or Repair settles it")
	}
	st, err := pushStatus(ctx, c.tr, c.call(node), attempt.PushID)
	switch {
	case errors.Is(err, dbsync.ErrPushAbandoned):
		return &protocol.PushStatus{PushID: attempt.PushID}, nil
	case err != nil:
		return nil, err
	}
	return &protocol.PushStatus{PushID: attempt.PushID, VersionID: st.VersionID}, nil
}

// dropUnread deletes, unlogged, the rows of t among named that the server
// did not answer (fetched holds those it did), with the local rows that
// reference them, up to maxDiscardFetch: they come back with the server's
// values if they re-enter the node's scope. A row some of whose
// referencing rows have pending changes, or are of a table the server
// does not hold the node to in part (it would not send them again), stays
// for the next pull to settle.
func (c *Client) dropUnread(ctx context.Context, tx bun.Tx, t *dbsync.Table, named []merge.Obj, fetched map[string]reflect.Value) error {
	if !t.Direction.Pulled() {
		return nil
	}
	for _, o := range named {
		if o.Table != t.Name {
			continue
		}
		if _, ok := fetched[o.Key]; ok {
			continue
		}
		levels, ok, err := c.dependents(ctx, tx, t, o.Key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		for i := len(levels) - 1; i >= 0; i-- { // the deepest first
			for _, lt := range c.reg.Tables() {
				if keys := levels[i][lt]; len(keys) > 0 {
					if err := store.Delete(ctx, tx, lt, keys); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// dependents lists the row key of t and the local rows referencing it, up
// the chains, level by level (level 0: the row), and reports whether they
// may all be deleted: none of the others has a pending change, all are
// of tables held in part (scoped), and they are at most maxDiscardFetch.
func (c *Client) dependents(ctx context.Context, tx bun.Tx, t *dbsync.Table, key string) ([]map[*dbsync.Table][]string, bool, error) {
	levels := []map[*dbsync.Table][]string{{t: {key}}}
	seen := map[merge.Obj]bool{{Table: t.Name, Key: key}: true}
	for n := 0; n < len(levels); n++ {
		next := map[*dbsync.Table][]string{}
		for pt, keys := range levels[n] {
			for _, ch := range c.reg.Children(pt.Name) {
				refs, err := store.Referencing(ctx, tx, ch.Table, ch.FK.Column, pt, keys)
				if err != nil {
					return nil, false, err
				}
				for _, r := range refs {
					o := merge.Obj{Table: ch.Table.Name, Key: r.Child}
					if seen[o] {
						continue
					}
					if !slices.Contains(c.scoped, ch.Table.Name) || len(seen) >= maxDiscardFetch {
						return nil, false, nil
					}
					seen[o] = true
					next[ch.Table] = append(next[ch.Table], r.Child)
				}
			}
		}
		for ct, keys := range next {
			var pending int
			if err := tx.NewSelect().Model((*models.Operation)(nil)).
				Where("version_id IS NULL AND content_type_id = ? AND row_id IN (?)", ct.ContentTypeID, bun.List(keys)).
				ColumnExpr("COUNT(*)").Scan(ctx, &pending); err != nil {
				return nil, false, fmt.Errorf("client: read pending changes of %s: %w", ct.Name, err)
			}
			if pending > 0 {
				return nil, false, nil
			}
		}
		if len(next) > 0 {
			levels = append(levels, next)
		}
	}
	return levels, true, nil
}

// maxDiscardFetch bounds the rows DiscardPending reads from the server.
const maxDiscardFetch = 10000

// serverRows reads from the server (a query a row) the rows of want the
// node may read, and the rows those reference, up their chains, that the
// local database lacks; by table and key. Rows the server does not answer
// are left out.
func (c *Client) serverRows(ctx context.Context, want []merge.Obj) (map[*dbsync.Table]map[string]reflect.Value, error) {
	out := map[*dbsync.Table]map[string]reflect.Value{}
	asked := map[merge.Obj]bool{}
	want = slices.Clone(want) // reused below: the caller's slice stays
	for len(want) > 0 {
		if len(asked)+len(want) > maxDiscardFetch {
			return nil, fmt.Errorf("client: giving up changes needs more than %d rows from the server: repair instead", maxDiscardFetch)
		}
		refs := map[merge.Obj]bool{}
		for _, o := range want {
			if asked[o] {
				continue
			}
			asked[o] = true
			t := c.reg.Table(o.Table)
			if !t.Direction.Pulled() {
				continue
			}
			got, err := c.Query(ctx, &protocol.QueryRequest{Table: t.Name, Equal: map[string]string{t.PK.Name: o.Key}})
			if err != nil {
				return nil, fmt.Errorf("client: read %s %s from the server: %w", t.Name, o.Key, err)
			}
			if len(got.Rows) != 1 {
				continue
			}
			strct, err := decodeRows(t, got.Rows)
			if err != nil {
				return nil, err
			}
			if t.Codec().KeyOf(strct[0]) != o.Key {
				return nil, fmt.Errorf("%w: query of %s %s answered another row", dbsync.ErrBadResponse, t.Name, o.Key)
			}
			if out[t] == nil {
				out[t] = map[string]reflect.Value{}
			}
			out[t][o.Key] = strct[0]
			for _, fk := range t.ForeignKeys {
				if k := t.Column(fk.Column).KeyOf(strct[0]); k != "" {
					refs[merge.Obj{Table: fk.RefTable, Key: k}] = true
				}
			}
		}
		// The referenced rows the node lacks (not held, or deleted and
		// not pushed) come too.
		want = want[:0]
		byTable := map[string][]string{}
		for o := range refs {
			if !asked[o] {
				byTable[o.Table] = append(byTable[o.Table], o.Key)
			}
		}
		for name, keys := range byTable {
			have, err := store.Existing(ctx, c.db, c.reg.Table(name), keys)
			if err != nil {
				return nil, err
			}
			for _, k := range keys {
				if !have[k] {
					want = append(want, merge.Obj{Table: name, Key: k})
				}
			}
		}
	}
	return out, nil
}

// heldKeys lists, per table, the keys of the rows the node holds as the
// server sent them: its rows, less its unpushed inserts, plus the rows it
// deleted and has not pushed.
func (c *Client) heldKeys(ctx context.Context, db bun.IDB, tables []string) (map[string][]string, error) {
	type pending struct{ created, deleted bool }
	byTable := map[int64]map[string]*pending{}
	var ops []models.Operation
	if err := db.NewSelect().Model(&ops).Column("content_type_id", "row_id", "command", "order").
		Where("version_id IS NULL").OrderExpr(`"order" ASC`).Scan(ctx); err != nil {
		return nil, fmt.Errorf("client: read pending operations: %w", err)
	}
	for _, op := range ops {
		m := byTable[op.ContentTypeID]
		if m == nil {
			m = map[string]*pending{}
			byTable[op.ContentTypeID] = m
		}
		p := m[op.RowID]
		if p == nil {
			// A first entry that inserts, unless the merge put it at the
			// head (negative order: a row the server had, re-created).
			p = &pending{created: op.Command == models.Insert && op.Order >= 0}
			m[op.RowID] = p
		}
		p.deleted = op.Command == models.Delete
	}
	out := make(map[string][]string, len(tables))
	for _, name := range tables {
		t := c.reg.Table(name)
		if t == nil {
			continue
		}
		keys, err := store.KeysWhere(ctx, db, t, bun.Safe("1 = 1"))
		if err != nil {
			return nil, err
		}
		held := make([]string, 0, len(keys))
		pend := byTable[t.ContentTypeID]
		for k := range keys {
			if p := pend[k]; p == nil || !p.created {
				held = append(held, k)
			}
		}
		for k, p := range pend {
			if p.deleted && !p.created && !keys[k] {
				held = append(held, k)
			}
		}
		out[name] = held
	}
	return out, nil
}

// scopeOut deletes rows that left the node's scope, without logging
// (capture is off in the pull). Pending local changes to them, and local
// rows still referencing them, are refused with a *dbsync.ScopeError
// naming them, those of every line, at the end line (finishPull): the
// pull is not applied, nothing is lost.
func (c *Client) scopeOut(ctx context.Context, tx bun.Tx, st *pullState, msg *protocol.Message) error {
	t := c.reg.Table(msg.Table)
	if t == nil || !t.Direction.Pulled() {
		return fmt.Errorf("%w: scope_out line for table %q", dbsync.ErrBadResponse, msg.Table)
	}
	keys := make([]string, len(msg.Keys))
	for i, k := range msg.Keys {
		ck, err := t.CanonicalKey(k)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		keys[i] = ck
	}
	var conflicts []protocol.ScopeEntry
	pend, err := pendingRows(ctx, tx, t, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if pend[k] {
			conflicts = append(conflicts, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
	}
	if st.leaving == nil {
		st.leaving = map[string]map[string]bool{}
	}
	leaving := st.leaving[t.Name]
	if leaving == nil {
		leaving = make(map[string]bool, len(keys))
		st.leaving[t.Name] = leaving
	}
	for _, k := range keys {
		leaving[k] = true
	}
	// The node's pushed rows of push-only tables referencing the leaving
	// rows leave with them: no pull sends them back, nor deletes them.
	pushed, refused, err := c.pushedDependents(ctx, tx, t, keys)
	if err != nil {
		return err
	}
	conflicts = append(conflicts, refused...)
	for _, ch := range c.reg.Children(t.Name) {
		if !ch.Table.Direction.Pulled() {
			continue // pushedDependents
		}
		refs, err := store.Referencing(ctx, tx, ch.Table, ch.FK.Column, t, keys)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if ch.Table == t {
				// A row of a tree under a leaving row: it leaves with it,
				// maybe in a later line (finishPull decides).
				if !leaving[r.Child] {
					st.treeRefs = append(st.treeRefs, protocol.ScopeEntry{Table: t.Name, PK: r.Child})
				}
				continue
			}
			if !st.leaving[ch.Table.Name][r.Child] { // else named by its own line if pending
				conflicts = append(conflicts, protocol.ScopeEntry{Table: ch.Table.Name, PK: r.Child})
			}
		}
	}
	if len(conflicts) > 0 || len(st.refused) > 0 {
		// Refused at the end line, with those of the later lines; the
		// rows stay (the pull's transaction rolls back), and so do the
		// later lines' rows, which the rows kept may reference.
		st.refused = append(st.refused, conflicts...)
		st.res.ScopeOut += int64(len(keys))
		return nil
	}
	tc := &store.Touched{}
	if err := c.deletePushed(ctx, tx, pushed, tc); err != nil {
		return err
	}
	if err := store.Delete(ctx, tx, t, keys); err != nil {
		return err
	}
	tc.Deleted(t, keys...)
	if err := st.settle(ctx, tx, tc); err != nil {
		return err
	}
	st.res.ScopeOut += int64(len(keys))
	return nil
}

// deletePushed deletes, unlogged, the rows pushedDependents listed, the
// deepest first, noting them in tc.
func (c *Client) deletePushed(ctx context.Context, tx bun.Tx, levels []map[*dbsync.Table][]string, tc *store.Touched) error {
	for i := len(levels) - 1; i >= 0; i-- {
		for _, pt := range c.reg.Tables() {
			if keys := levels[i][pt]; len(keys) > 0 {
				if err := store.Delete(ctx, tx, pt, keys); err != nil {
					return err
				}
				tc.Deleted(pt, keys...)
			}
		}
	}
	return nil
}

// pushedDependents lists, level by level, the local rows of push-only
// tables that reference keys of t, rows of a pulled table the node
// deletes without logging (leaving its scope, deleted by a pull or a
// reset), and those referencing them in turn: rows the node pushed,
// which the server never sends back, so that they go with the rows they
// reference (merge.md S1, A6). Those with pending changes, and rows of
// pulled tables referencing them, are returned as refused too (S2: the
// application gives them up with DiscardPending); the rows are deleted
// only when nothing is refused. The pulled tables referencing t are the
// caller's to check.
func (c *Client) pushedDependents(ctx context.Context, tx bun.Tx, t *dbsync.Table, keys []string) ([]map[*dbsync.Table][]string, []protocol.ScopeEntry, error) {
	var levels []map[*dbsync.Table][]string
	var refused []protocol.ScopeEntry
	seen := map[merge.Obj]bool{}
	parents := map[*dbsync.Table][]string{t: keys}
	for len(parents) > 0 {
		next := map[*dbsync.Table][]string{}
		for pt, pkeys := range parents {
			for _, ch := range c.reg.Children(pt.Name) {
				if ch.Table.Direction.Pulled() && pt == t {
					continue // the caller's
				}
				refs, err := store.Referencing(ctx, tx, ch.Table, ch.FK.Column, pt, pkeys)
				if err != nil {
					return nil, nil, err
				}
				var found []string
				for _, r := range refs {
					o := merge.Obj{Table: ch.Table.Name, Key: r.Child}
					if seen[o] {
						continue
					}
					seen[o] = true
					if ch.Table.Direction.Pulled() {
						refused = append(refused, protocol.ScopeEntry{Table: ch.Table.Name, PK: r.Child})
						continue
					}
					found = append(found, r.Child)
				}
				if len(found) == 0 {
					continue
				}
				pend, err := pendingRows(ctx, tx, ch.Table, found)
				if err != nil {
					return nil, nil, err
				}
				for _, k := range found {
					if pend[k] {
						refused = append(refused, protocol.ScopeEntry{Table: ch.Table.Name, PK: k})
					}
				}
				// Refused or not, the rows referencing them are looked
				// at too: a refusal names them all, and without one
				// every row found is deleted.
				next[ch.Table] = append(next[ch.Table], found...)
			}
		}
		if len(next) > 0 {
			levels = append(levels, next)
		}
		parents = next
	}
	return levels, refused, nil
}

// pendingRows returns which of the keys have pending (unpushed) local
// operations.
func pendingRows(ctx context.Context, tx bun.IDB, t *dbsync.Table, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(keys); start += store.Batch {
		var rows []string
		if err := tx.NewSelect().Model((*models.Operation)(nil)).Column("row_id").
			Where("version_id IS NULL AND content_type_id = ? AND row_id IN (?)", t.ContentTypeID, bun.List(keys[start:min(start+store.Batch, len(keys))])).
			Scan(ctx, &rows); err != nil {
			return nil, fmt.Errorf("client: read pending operations: %w", err)
		}
		for _, k := range rows {
			out[k] = true
		}
	}
	return out, nil
}

// scopeIn writes rows that entered the node's scope, without logging,
// after the rows they reference that the node deleted (merge.md D2).
func (c *Client) scopeIn(ctx context.Context, tx bun.Tx, st *pullState, msg *protocol.Message) error {
	t := c.reg.Table(msg.Table)
	if t == nil || !t.Direction.Pulled() {
		return fmt.Errorf("%w: scope_in line for table %q", dbsync.ErrBadResponse, msg.Table)
	}
	rows, err := decodeRows(t, msg.Rows)
	if err != nil {
		return err
	}
	if len(st.refused) > 0 {
		// The end line refuses the pull (scopeOut): nothing to write,
		// the rows that left are still there.
		st.res.ScopeIn += int64(len(rows))
		return nil
	}
	tc := &store.Touched{}
	for _, r := range rows {
		tc.Wrote(t, t.Codec().KeyOf(r))
	}
	// D2: rows the node deleted and has not pushed that they reference
	// come back from the line's payload.
	if err := c.restoreReferenced(ctx, tx, st, t, t.ForeignKeys, rows, msg.Payload, tc); err != nil {
		return err
	}
	if err := store.Write(ctx, tx, t, rows, true); err != nil {
		return err
	}
	st.written[t.Name] = true
	if err := st.settle(ctx, tx, tc); err != nil {
		return err
	}
	st.res.ScopeIn += int64(len(rows))
	return nil
}
