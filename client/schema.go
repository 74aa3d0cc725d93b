package client

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// recordedSchema returns the schema the node announced in its latest pull
// or repair (sync_node_schema), "" when none is recorded.
func recordedSchema(ctx context.Context, db bun.IDB) (string, error) {
	var text []string
	if err := db.NewRaw("SELECT announced FROM sync_node_schema WHERE id = 1").Scan(ctx, &text); err != nil {
		return "", fmt.Errorf("read the recorded schema: %w", err)
	}
	if len(text) == 0 {
		return "", nil
	}
	return text[0], nil
}

// nodeTable is a row of sync_node_tables: a tracked table as the node's
// latest pull, repair, reset or registration left it.
type nodeTable struct {
	bun.BaseModel `bun:"table:sync_node_tables"`

	Name string `bun:"name,pk"`
	// Pulled: the node holds every row of the table the server lets it
	// read (false: its release did not pull the table, or a server no
	// longer holding it to part of the table did not send the rows it
	// lacked; backfill then asks for the table whole).
	Pulled bool `bun:"pulled,notnull"`
	// Scoped: the latest pull header named the table scoped.
	Scoped bool `bun:"scoped,notnull"`
}

// recordedTables returns the node's tables as recorded
// (sync_node_tables), by name; empty when none is recorded (a node that
// has not pulled since it upgraded from a release of dbsync that did not
// record them).
func recordedTables(ctx context.Context, db bun.IDB) (map[string]nodeTable, error) {
	var rows []nodeTable
	if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
		return nil, fmt.Errorf("read the recorded tables: %w", err)
	}
	out := make(map[string]nodeTable, len(rows))
	for _, r := range rows {
		out[r.Name] = r
	}
	return out, nil
}

// recordSchema records the schema the node announces now, and which of
// its tables it pulls, in tx, once a pull or repair with it applied (or
// a registration, or a reset): whatever the node's earlier release
// lacked, the pull's backfill brought. Whether a table is scoped stays
// as recorded (recordScoped).
// The caller commits tx and then sets c.schemaRecorded.
func (c *Client) recordSchema(ctx context.Context, tx bun.IDB) error {
	if c.schemaRecorded {
		return nil
	}
	reg := c.registry()
	_, err := tx.ExecContext(ctx, "INSERT INTO sync_node_schema (id, announced) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET announced = EXCLUDED.announced",
		reg.NodeSchema().String())
	if err != nil {
		return fmt.Errorf("record the schema: %w", err)
	}
	rows := make([]nodeTable, 0, len(reg.Tables()))
	for _, t := range reg.Tables() {
		rows = append(rows, nodeTable{Name: t.Name, Pulled: t.Direction.Pulled()})
	}
	if _, err := tx.NewInsert().Model(&rows).On("CONFLICT (name) DO UPDATE").Set("pulled = EXCLUDED.pulled").Exec(ctx); err != nil {
		return fmt.Errorf("record the tables: %w", err)
	}
	return nil
}

// recordScoped records, in a pull's tx, after recordSchema, the tables
// its header named scoped, and marks not pulled those of widened: tables
// the node held in part that the server no longer holds it to, without
// having sent the rows it lacked (a server without scopes, or of a
// release before held_read): the node's next pull backfills them whole.
func (c *Client) recordScoped(ctx context.Context, tx bun.IDB, scoped, widened []string) error {
	recorded, err := recordedTables(ctx, tx)
	if err != nil {
		return err
	}
	var rows []nodeTable
	for _, t := range c.reg.Tables() {
		r, ok := recorded[t.Name]
		if !ok {
			r = nodeTable{Name: t.Name, Pulled: t.Direction.Pulled()}
		}
		want := r
		want.Scoped = slices.Contains(scoped, t.Name)
		if slices.Contains(widened, t.Name) {
			want.Pulled = false
		}
		if !ok || want != r {
			rows = append(rows, want)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	if _, err := tx.NewInsert().Model(&rows).On("CONFLICT (name) DO UPDATE").
		Set("pulled = EXCLUDED.pulled").Set("scoped = EXCLUDED.scoped").Exec(ctx); err != nil {
		return fmt.Errorf("record the scoped tables: %w", err)
	}
	return nil
}

// loadScoped sets c.scoped, the first time, from the tables the node's
// latest pull header named scoped (recorded: sync_node_tables), so that a
// new Client lists their held keys as the one before it would have.
// Called holding c.mu.
func (c *Client) loadScoped(ctx context.Context) error {
	if c.scopedLoaded {
		return nil
	}
	recorded, err := recordedTables(ctx, c.db)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	var scoped []string
	for _, t := range c.reg.Tables() {
		if recorded[t.Name].Scoped && t.Direction.Pulled() {
			scoped = append(scoped, t.Name)
		}
	}
	if c.scoped == nil {
		c.scoped = scoped
	}
	c.scopedLoaded = true
	return nil
}

// backfillReq is what a pull asks the server to backfill
// (protocol.PullRequest.Backfill): the tables and columns (reg), the
// text of the request, and the tables new to the node or widened (whole),
// whose rows are written whole; of the others only the gained columns
// are set. widened holds the tables the node had but did not hold whole
// (push-only before, or scoped by a server that stopped without sending
// the rows the node lacked): of those the rows with pending changes keep
// the node's state.
type backfillReq struct {
	reg     *dbsync.Registry
	text    string
	whole   map[string]bool
	widened map[string]bool
	// added is reg less the columns whose type class changed (retyped),
	// nil when none did: a row with a pending change keeps the node's
	// values of those.
	added *dbsync.Registry
}

// backfill returns what the node's next pull asks the server to backfill:
// the pulled tables and columns its schema gained since the schema it
// recorded (its application migrated), and the tables it pulls that it
// did not hold whole (widened: recorded not pulled, sync_node_tables);
// nil for none, or when no schema is recorded (a node that has not pulled
// since it registered, or since it upgraded from a release of dbsync that
// did not record it). A table the node had is backfilled by column even
// when it had only its key.
func (c *Client) backfill(ctx context.Context) (*backfillReq, error) {
	if c.schemaRecorded {
		return nil, nil
	}
	text, err := recordedSchema(ctx, c.db)
	if err != nil || text == "" {
		return nil, err
	}
	tables, err := recordedTables(ctx, c.db)
	if err != nil {
		return nil, err
	}
	now := c.reg.NodeSchema()
	if text == now.String() && c.tablesAsRecorded(tables) {
		c.schemaRecorded = true
		return nil, nil
	}
	before, err := protocol.ParseNodeSchema(text)
	if err != nil {
		c.log.WarnContext(ctx, "client: the recorded schema is not readable; no backfill", slog.String("error", err.Error()))
		return nil, nil
	}
	want, added := &protocol.NodeSchema{}, &protocol.NodeSchema{}
	retyped := false
	whole, widened := map[string]bool{}, map[string]bool{}
	for _, nt := range now.Tables {
		if !c.reg.Table(nt.Name).Direction.Pulled() {
			continue
		}
		bt := before.Table(nt.Name)
		if bt == nil {
			want.Tables = append(want.Tables, nt)
			added.Tables = append(added.Tables, nt)
			whole[nt.Name] = true
			continue
		}
		// Recorded not pulled: the node's earlier release pushed the
		// table only, or a scope held the node to part of it; it lacks
		// the rows of others. (Nothing recorded: a node of a release of
		// dbsync before the record; it does not know.)
		if r, ok := tables[nt.Name]; ok && !r.Pulled {
			want.Tables = append(want.Tables, nt)
			added.Tables = append(added.Tables, nt)
			whole[nt.Name], widened[nt.Name] = true, true
			continue
		}
		// A column whose type class changed is not new to the node: its
		// value is the application's, converted by the migration.
		gained := protocol.SchemaTable{Name: nt.Name, KeyKind: nt.KeyKind, Columns: nt.Columns[:1:1]}
		newCols := gained
		for _, col := range nt.Columns[1:] {
			switch bc := bt.Column(col.Name); {
			case bc == nil:
				gained.Columns = append(gained.Columns, col)
				newCols.Columns = append(newCols.Columns, col)
			case bc.Class != col.Class:
				gained.Columns = append(gained.Columns, col)
				retyped = true
			}
		}
		if len(gained.Columns) > 1 {
			want.Tables = append(want.Tables, gained)
			added.Tables = append(added.Tables, newCols)
		}
	}
	if len(want.Tables) == 0 {
		return nil, nil
	}
	reg, err := c.reg.Project(want)
	if err != nil {
		return nil, err
	}
	bf := &backfillReq{reg: reg, text: want.String(), whole: whole, widened: widened}
	if retyped {
		if bf.added, err = c.reg.Project(added); err != nil {
			return nil, err
		}
	}
	return bf, nil
}

// updateGained sets, in the rows the node holds, the columns of t (a table
// of bf.reg) its schema gained. A retyped column keeps the node's value in
// a row with a pending change: the application wrote it under the earlier
// release, whose pushes the server refused for their schema, and the
// node's push carries it as any pending change (merge.md E3).
func (c *Client) updateGained(ctx context.Context, tx bun.IDB, bf *backfillReq, t *dbsync.Table, rows []reflect.Value) error {
	var nt *dbsync.Table
	if bf.added != nil {
		nt = bf.added.Table(t.Name)
	}
	if nt == nil || len(nt.Columns) == len(t.Columns) {
		return store.Update(ctx, tx, t, rows)
	}
	keys := make([]string, len(rows))
	for i, strct := range rows {
		keys[i] = t.Codec().KeyOf(strct)
	}
	if c.keyEq[t.Name] != "" {
		// The node's row, and its log, may spell the key otherwise
		// (merge.md K2): a reset's rows meet it before the merge.
		held, err := store.HeldSpellings(ctx, tx, c.reg.Table(t.Name), keys)
		if err != nil {
			return err
		}
		for i, k := range keys {
			if h, ok := held[k]; ok {
				keys[i] = h
			}
		}
	}
	pend, err := pendingRows(ctx, tx, c.reg.Table(t.Name), keys)
	if err != nil {
		return err
	}
	var others, pending []reflect.Value
	for i, strct := range rows {
		if pend[keys[i]] {
			pending = append(pending, strct)
		} else {
			others = append(others, strct)
		}
	}
	if err := store.Update(ctx, tx, t, others); err != nil {
		return err
	}
	return store.Update(ctx, tx, nt, pending)
}

// withoutWidened returns bf less its widened tables (nil when nothing is
// left), and their names.
func (c *Client) withoutWidened(bf *backfillReq) (*backfillReq, []string, error) {
	all, err := protocol.ParseNodeSchema(bf.text)
	if err != nil {
		return nil, nil, err
	}
	want := &protocol.NodeSchema{}
	var widened []string
	for _, t := range all.Tables {
		if bf.widened[t.Name] {
			widened = append(widened, t.Name)
		} else {
			want.Tables = append(want.Tables, t)
		}
	}
	if len(want.Tables) == 0 {
		return nil, widened, nil
	}
	reg, err := c.reg.Project(want)
	if err != nil {
		return nil, nil, err
	}
	return &backfillReq{reg: reg, text: want.String(), whole: bf.whole}, widened, nil
}

// tablesAsRecorded reports whether the recorded tables (recordedTables)
// are the node's, each pulled as its registry says.
func (c *Client) tablesAsRecorded(tables map[string]nodeTable) bool {
	for _, t := range c.reg.Tables() {
		if r, ok := tables[t.Name]; !ok || r.Pulled != t.Direction.Pulled() {
			return false
		}
	}
	return true
}

// applyBackfill writes one backfill line of a pull: rows of a table new to
// the node are written whole (replacing a row with the same key), the
// columns a table the node had gained are set in the rows it holds (rows
// it does not hold, deleted ones included, are left out). Local values of
// those columns are overwritten, pending changes included (merge.md E3).
func (c *Client) applyBackfill(ctx context.Context, tx bun.Tx, st *pullState, msg *protocol.Message) error {
	var t *dbsync.Table
	if st.backfill != nil {
		t = st.backfill.reg.Table(msg.Table)
	}
	if t == nil {
		return fmt.Errorf("%w: backfill rows for table %q, which the pull did not ask for", dbsync.ErrBadResponse, msg.Table)
	}
	rows, err := decodeRows(t, msg.Rows)
	if err != nil {
		return err
	}
	st.backfilled += int64(len(msg.Rows))
	full := c.reg.Table(t.Name)
	whole := st.backfill.whole[t.Name]
	if st.backfill.widened[t.Name] {
		// A row of a widened table with a pending change keeps the
		// node's state, as the chunks merged it: its push settles it
		// with the server (a pending delete stays a delete).
		if rows, err = withoutPending(ctx, tx, full, rows); err != nil {
			return err
		}
	}
	// t keeps only the references among the backfilled tables; those of
	// its columns to the node's other tables count too.
	var fks []protocol.ForeignKey
	for _, fk := range full.ForeignKeys {
		if t.Column(fk.Column) != nil {
			fks = append(fks, fk)
		}
	}
	// A gained column is set only in the rows the node holds: only their
	// references count.
	var held map[string]bool
	if !whole && len(fks) > 0 {
		keys := make([]string, len(rows))
		for i, strct := range rows {
			keys[i] = full.Codec().KeyOf(strct)
		}
		if held, err = store.Existing(ctx, tx, full, keys); err != nil {
			return err
		}
	}
	tc := &store.Touched{}
	referring := rows
	if whole {
		for _, strct := range rows {
			tc.Wrote(full, full.Codec().KeyOf(strct))
		}
	} else if held != nil {
		referring = nil
		for _, strct := range rows {
			if held[full.Codec().KeyOf(strct)] {
				referring = append(referring, strct)
			}
		}
	}
	if err := c.restoreReferenced(ctx, tx, st, full, fks, referring, msg.Payload, tc); err != nil {
		return err
	}
	if whole {
		st.written[t.Name] = true
		err = store.Write(ctx, tx, full, rows, true)
	} else {
		err = c.updateGained(ctx, tx, st.backfill, t, rows)
	}
	if err != nil {
		return err
	}
	return st.settle(ctx, tx, tc)
}

// withoutPending returns rows less those with pending (unpushed) changes.
func withoutPending(ctx context.Context, tx bun.IDB, t *dbsync.Table, rows []reflect.Value) ([]reflect.Value, error) {
	keys := make([]string, len(rows))
	for i, strct := range rows {
		keys[i] = t.Codec().KeyOf(strct)
	}
	pend, err := pendingRows(ctx, tx, t, keys)
	if err != nil || len(pend) == 0 {
		return rows, err
	}
	out := rows[:0:0]
	for i, strct := range rows {
		if !pend[keys[i]] {
			out = append(out, strct)
		}
	}
	return out, nil
}

// restoreReferenced applies D2 to rows a pull writes outside its chunks
// (backfill and scope_in lines): of the rows they reference through fks
// (recorded in tc), each the node deleted and has not pushed comes back
// from payload, its delete dropped, before they are written.
func (c *Client) restoreReferenced(ctx context.Context, tx bun.Tx, st *pullState, t *dbsync.Table, fks []protocol.ForeignKey, rows []reflect.Value, payload protocol.Payload, tc *store.Touched) error {
	var parents []merge.Obj
	for _, strct := range rows {
		for _, fk := range fks {
			if k := t.Column(fk.Column).KeyOf(strct); k != "" {
				tc.Referenced(c.reg.Table(fk.RefTable), k)
				parents = append(parents, merge.Obj{Table: fk.RefTable, Key: k})
			}
		}
	}
	if len(payload) == 0 || len(parents) == 0 {
		return nil
	}
	chunk, err := c.decodeChunk(&protocol.Message{Payload: payload})
	if err != nil {
		return err
	}
	plan, err := st.merger.Restore(parents, chunk.payload)
	if err != nil {
		return err
	}
	for _, r := range plan.Conflicts {
		st.res.Conflicts[r.Kind]++
	}
	return c.applyPlan(ctx, tx, plan, st.late, st.written, tc)
}

// backfillFirst pulls when the node's schema gained columns or tables
// since its latest pull (backfill): before the node pushes, so that a
// push of rows changed before the upgrade does not send the new columns'
// local defaults over the server's values. It returns the pull, nil for
// none.
func (c *Client) backfillFirst(ctx context.Context) (*PullResult, error) {
	if bf, err := c.backfill(ctx); err != nil || bf == nil {
		return nil, err
	}
	return c.pullWhole(ctx)
}

// resetBackfill sets, in the rows the node holds, the columns its schema
// gained since its latest pull (bf, nil for none) from a rows line of a
// reset, before the line is merged: a pending change of such a row then
// keeps the server's values of those columns, as after a backfill (E3).
// Tables new to the node need nothing: their rows are merged whole.
func (c *Client) resetBackfill(ctx context.Context, tx bun.Tx, bf *backfillReq, msg *protocol.Message) error {
	if bf == nil || bf.whole[msg.Table] {
		return nil
	}
	t := bf.reg.Table(msg.Table)
	if t == nil {
		return nil
	}
	rows, err := decodeRows(c.reg.Table(msg.Table), msg.Rows)
	if err != nil {
		return err
	}
	return c.updateGained(ctx, tx, bf, t, rows)
}
