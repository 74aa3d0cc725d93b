package server

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// stagedKey is one operation of a staged chunk: the row it names
// (sync_push_keys, migration 0004), for the operations keyed selects. The
// commit of a chunked push checks the push across its chunks with queries
// on these rows, and never holds the whole push.
type stagedKey struct {
	bun.BaseModel `bun:"table:sync_push_keys"`

	NodeID  int64  `bun:"node_id,pk"`
	PushID  string `bun:"push_id,pk"`
	Table   string `bun:"tbl,pk"`
	RowID   string `bun:"row_id,pk"`
	Seq     int    `bun:"seq,pk"`
	Command string `bun:"command,notnull"`
}

// keyBatch is the number of keys per statement on sync_push_keys, and of
// deleted keys per page at the commit.
const keyBatch = 1000

// keyed reports whether a chunk stages the key of op (stageKeys): every
// delete, since the commit applies the deletes and checks what they leave
// referenced from the keys, and every row of a table with unique columns,
// whose unique check asks which chunk names a holder. The commit stages
// the other keys it needs itself (stageChildren), and checks that no two
// chunks name one row on the version's log (checkDistinct): staging every
// key cost as much as writing the rows. On a server with scopes (all)
// every key is staged: the scope checks (stagedScope) ask of every row.
func keyed(reg *dbsync.Registry, op protocol.Operation, all bool) bool {
	if all || op.Command == models.Delete {
		return true
	}
	t := reg.Table(op.Table)
	return t != nil && len(t.Uniques) > 0
}

// stageKeys records the keyed rows a chunk names, replacing those of an
// earlier copy of the chunk; all stages every key (keyed).
func stageKeys(ctx context.Context, tx bun.Tx, reg *dbsync.Registry, node int64, c *protocol.PushChunk, all bool) error {
	if _, err := tx.NewDelete().Model((*stagedKey)(nil)).
		Where("node_id = ? AND push_id = ? AND seq = ?", node, c.PushID, c.Seq).Exec(ctx); err != nil {
		return fmt.Errorf("drop staged keys: %w", err)
	}
	var ops []protocol.Operation
	for _, op := range c.Operations {
		if keyed(reg, op, all) {
			ops = append(ops, op)
		}
	}
	return insertKeys(ctx, tx, node, c.PushID, c.Seq, ops)
}

// insertKeys writes the keys of ops, staged for chunk seq. Its row ids are
// canonical (checkPush). On PostgreSQL through pgx, one INSERT … SELECT
// over unnest of arrays; otherwise multi-row INSERTs.
func insertKeys(ctx context.Context, tx bun.Tx, node int64, pushID string, seq int, ops []protocol.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	const insert = "INSERT INTO sync_push_keys (node_id, push_id, tbl, row_id, seq, command) "
	if raw := dialect.ArrayArgs(tx); raw != nil && plainKeys(ops) {
		tables, keys, cmds := make([]string, len(ops)), make([]string, len(ops)), make([]string, len(ops))
		for i, op := range ops {
			tables[i], keys[i], cmds[i] = op.Table, op.RowID, string(op.Command)
		}
		if _, err := raw.ExecContext(ctx, insert+"SELECT $1::bigint, $2::text, t, r, $3::integer, m FROM unnest($4::text[], $5::text[], $6::text[]) AS u(t, r, m)",
			dialect.BinaryArgs(tx, node, pushID, seq, tables, keys, cmds)...); err != nil {
			return fmt.Errorf("stage keys: %w", err)
		}
		return nil
	}
	for part := range slices.Chunk(ops, keyBatch) {
		rows := make([]stagedKey, len(part))
		for i, op := range part {
			rows[i] = stagedKey{NodeID: node, PushID: pushID, Table: op.Table, RowID: op.RowID, Seq: seq, Command: string(op.Command)}
		}
		if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
			return fmt.Errorf("stage keys: %w", err)
		}
	}
	return nil
}

// stageChildren stages, inside the commit's transaction, the keys of the
// rows the push writes in the children of the tables it deletes rows of,
// where the chunks did not stage them (keyed): the orphan check asks
// whether the push rewrites a child still referencing a deleted row. It
// reads the chunks once, one at a time, and only for such pushes, and
// not when the chunks staged every key (a scoped server's, or one that
// had scopes when it staged them). So are those of the rows the push
// writes in the tables it deletes rows of whose keys the database does
// not compare byte for byte (loose): a row deleted and written under
// another spelling of its key is respelled in place (respellInPlace).
func (p *stagedPush) stageChildren(ctx context.Context, tx bun.Tx, reg *dbsync.Registry, deleting []*dbsync.Table, loose func(t *dbsync.Table) bool) error {
	need := map[string]bool{}
	for _, t := range deleting {
		if loose(t) && len(t.Uniques) == 0 {
			need[t.Name] = true
		}
		for _, ch := range reg.Children(t.Name) {
			if len(ch.Table.Uniques) == 0 {
				need[ch.Table.Name] = true
			}
		}
	}
	if len(need) == 0 {
		return nil
	}
	if all, err := p.allStaged(ctx, tx); err != nil || all {
		return err
	}
	for seq := range p.digests {
		c, err := readChunk(ctx, tx, p, seq)
		if err != nil {
			return err
		}
		var ops []protocol.Operation
		for _, op := range c.Operations {
			if need[op.Table] && !keyed(reg, op, false) {
				ops = append(ops, op)
			}
		}
		if err := insertKeys(ctx, tx, p.node, p.pushID, seq, ops); err != nil {
			return err
		}
	}
	return nil
}

// plainKeys reports whether every row id can be bound as it is
// (dialect.PlainText).
func plainKeys(ops []protocol.Operation) bool {
	for _, op := range ops {
		if !dialect.PlainText(op.RowID) {
			return false
		}
	}
	return true
}

// dropKeys deletes the keys staged for a node's pushes: those of pushID,
// or, with other set, those of its other push ids.
func dropKeys(ctx context.Context, db bun.IDB, node int64, pushID string, other bool) error {
	op := "="
	if other {
		op = "<>"
	}
	if _, err := db.NewDelete().Model((*stagedKey)(nil)).Where("node_id = ? AND push_id "+op+" ?", node, pushID).Exec(ctx); err != nil {
		return fmt.Errorf("drop staged keys: %w", err)
	}
	return nil
}

// stagedPush is a chunked push being committed: its chunks 0 to
// len(digests)-1, whose keys are staged.
type stagedPush struct {
	node    int64
	pushID  string
	digests []string
}

// filter restricts a query on sync_push_keys or sync_push_chunks to the
// push's chunks.
func (p *stagedPush) filter(q *bun.SelectQuery) *bun.SelectQuery {
	return q.Where("node_id = ? AND push_id = ? AND seq < ?", p.node, p.pushID, len(p.digests))
}

// allStaged reports whether the chunks' keys are all staged, one per
// operation (a scoped server stages every key).
func (p *stagedPush) allStaged(ctx context.Context, db bun.IDB) (bool, error) {
	staged, err := p.filter(db.NewSelect().Model((*stagedKey)(nil))).Count(ctx)
	if err != nil {
		return false, fmt.Errorf("count staged keys: %w", err)
	}
	ops, err := p.operations(ctx, db)
	if err != nil {
		return false, err
	}
	return staged >= int64(ops), nil
}

// operations counts the push's operations.
func (p *stagedPush) operations(ctx context.Context, db bun.IDB) (int, error) {
	var n int
	if err := p.filter(db.NewSelect().Model((*stagedChunk)(nil)).ColumnExpr("COALESCE(SUM(operations), 0)")).Scan(ctx, &n); err != nil {
		return 0, fmt.Errorf("count staged operations: %w", err)
	}
	return n, nil
}

// checkDistinct refuses (dbsync.ErrBadRequest) a push two of whose chunks
// name the same row, a push carries one operation per row: once every
// chunk is written, on the log of its version (orders above floor, the
// greatest before the commit wrote any), where each chunk logged one
// entry per row it names.
func checkDistinct(ctx context.Context, tx bun.Tx, reg *dbsync.Registry, floor, version int64) error {
	var dup []struct {
		ContentTypeID int64  `bun:"content_type_id"`
		RowID         string `bun:"row_id"`
	}
	err := tx.NewSelect().Model((*models.Operation)(nil)).Column("content_type_id", "row_id").
		Where(`"order" > ? AND version_id = ?`, floor, version).
		Group("content_type_id", "row_id").Having("COUNT(*) > 1").Limit(1).Scan(ctx, &dup)
	if err != nil {
		return fmt.Errorf("check the push's rows: %w", err)
	}
	if len(dup) > 0 {
		name := strconv.FormatInt(dup[0].ContentTypeID, 10)
		if t := reg.ByContentType(dup[0].ContentTypeID); t != nil {
			name = t.Name
		}
		return fmt.Errorf("%w: two chunks name %s %s: a push carries one operation per row", dbsync.ErrBadRequest, name, dup[0].RowID)
	}
	return nil
}

// lastOrder returns the greatest order in the log (0 when empty).
func lastOrder(ctx context.Context, tx bun.Tx) (int64, error) {
	var top int64
	if err := tx.NewSelect().Model((*models.Operation)(nil)).ColumnExpr(`COALESCE(MAX("order"), 0)`).Scan(ctx, &top); err != nil {
		return 0, fmt.Errorf("read the log's last order: %w", err)
	}
	return top, nil
}

// deleteTables returns the tables the push deletes rows of, children
// first.
func (p *stagedPush) deleteTables(ctx context.Context, db bun.IDB, reg *dbsync.Registry) ([]*dbsync.Table, error) {
	var names []string
	if err := p.filter(db.NewSelect().Model((*stagedKey)(nil))).Distinct().Column("tbl").
		Where("command = ?", string(models.Delete)).Scan(ctx, &names); err != nil {
		return nil, fmt.Errorf("read staged deletes: %w", err)
	}
	tables := make([]*dbsync.Table, 0, len(names))
	for _, name := range names {
		t := reg.Table(name)
		if t == nil {
			return nil, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, name)
		}
		tables = append(tables, t)
	}
	slices.SortFunc(tables, func(a, b *dbsync.Table) int { return b.Rank() - a.Rank() })
	return tables, nil
}

// deletes hands the keys of the rows of t the push deletes to fn, a page
// of keyBatch at a time.
func (p *stagedPush) deletes(ctx context.Context, db bun.IDB, t *dbsync.Table, fn func(keys []string) error) error {
	return p.keys(ctx, db, t, string(models.Delete), fn)
}

// seqs returns, for those of the keys of t the push names, the chunk
// naming each.
func (p *stagedPush) seqs(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) (map[string]int, error) {
	out := make(map[string]int, len(keys))
	for part := range slices.Chunk(keys, keyBatch) {
		var rows []stagedKey
		if err := p.filter(db.NewSelect().Model(&rows)).Column("row_id", "seq").
			Where("tbl = ? AND row_id IN (?)", t.Name, bun.List(part)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("read staged keys of %s: %w", t.Name, err)
		}
		for _, r := range rows {
			out[r.RowID] = r.Seq
		}
	}
	return out, nil
}

// covered reports which of the keys of t the push deletes or, with
// rewrites, rewrites.
func (p *stagedPush) covered(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, rewrites bool) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	for part := range slices.Chunk(keys, keyBatch) {
		q := p.filter(db.NewSelect().Model((*stagedKey)(nil))).Column("row_id").
			Where("tbl = ? AND row_id IN (?)", t.Name, bun.List(part))
		if !rewrites {
			q = q.Where("command = ?", string(models.Delete))
		}
		var found []string
		if err := q.Scan(ctx, &found); err != nil {
			return nil, fmt.Errorf("read staged keys of %s: %w", t.Name, err)
		}
		for _, k := range found {
			out[k] = true
		}
	}
	return out, nil
}

// otherParts tells the unique check of one chunk (uniqueCheck) about the
// rows the push's other chunks name.
type otherParts struct {
	push *stagedPush
	seq  int // the chunk being applied
}

func (o *otherParts) seqs(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) (map[string]int, error) {
	return o.push.seqs(ctx, db, t, keys)
}
