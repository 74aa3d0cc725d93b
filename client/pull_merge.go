package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// What the merge of a pull reads: the node's pending changes (localState),
// each chunk's operations and rows (decodeChunk), and the node's rows as
// the merge asks for them (lookup).

// localState describes the node's pending operations for the merge.
func (c *Client) localState(ctx context.Context, tx bun.Tx) (*merge.Local, error) {
	// Every pending entry, D1's head entries (negative orders) included.
	kept, err := oplog.Compress(ctx, tx, c.reg, math.MinInt64)
	if err != nil {
		return nil, err
	}
	type group struct {
		first, last models.Operation
		orders      []int64
	}
	groups := map[merge.Obj]*group{}
	var objs []merge.Obj
	for _, op := range kept {
		t := c.reg.ByContentType(op.ContentTypeID)
		if t == nil {
			continue
		}
		o := merge.Obj{Table: t.Name, Key: op.RowID}
		g := groups[o]
		if g == nil {
			g = &group{first: op}
			groups[o] = g
			objs = append(objs, o)
		}
		g.last = op
		g.orders = append(g.orders, op.Order)
	}
	var ops []merge.LocalOp
	pendingKeys := map[string][]string{}
	for _, o := range objs {
		g := groups[o]
		w := oplog.ToWire(c.reg, []models.Operation{g.first, g.last})
		op, ok := oplog.CompressRun(w[0], w[1], len(g.orders))
		if !ok {
			continue
		}
		// Head entries (negative orders) are the merge's re-creations of
		// rows the server had (D1, M5): K1 must not move them.
		ops = append(ops, merge.LocalOp{Obj: o, Command: op.Command, Orders: g.orders, Recreated: g.orders[0] < 0})
		if op.Command != models.Delete {
			pendingKeys[o.Table] = append(pendingKeys[o.Table], o.Key)
		}
	}
	refs, err := c.localRefs(ctx, tx, pendingKeys)
	if err != nil {
		return nil, err
	}
	return merge.NewLocal(ops, refs), nil
}

// localRefs lists the references the node's pending rows (keys by table)
// hold to other rows, and those of the rows they reference, up their
// chains: D1 keeps every row a pending change depends on, the parent of a
// kept parent too, whichever of their deletes the pull brings first.
func (c *Client) localRefs(ctx context.Context, tx bun.Tx, pendingKeys map[string][]string) ([]merge.Ref, error) {
	var refs []merge.Ref
	seen := map[merge.Obj]bool{}
	for table, keys := range pendingKeys {
		for _, k := range keys {
			seen[merge.Obj{Table: table, Key: k}] = true
		}
	}
	for next := pendingKeys; len(next) > 0; {
		up := map[string][]string{} // the parents not looked at yet
		for _, t := range c.reg.Tables() {
			if len(next[t.Name]) == 0 || len(t.ForeignKeys) == 0 {
				continue
			}
			err := store.Load(ctx, tx, t, next[t.Name], func(strct reflect.Value) error {
				child := merge.Obj{Table: t.Name, Key: t.Codec().KeyOf(strct)}
				for _, fk := range t.ForeignKeys {
					k := t.Column(fk.Column).KeyOf(strct)
					if k == "" {
						continue
					}
					parent := merge.Obj{Table: fk.RefTable, Key: k}
					refs = append(refs, merge.Ref{Child: child, Parent: parent})
					if !seen[parent] {
						seen[parent] = true
						up[parent.Table] = append(up[parent.Table], k)
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		next = up
	}
	return refs, nil
}

// newMerger returns the merger of a pull or a reset. D1 keeps a row the
// server deleted only in a table the node pushes (merge.Pushes): the next
// push re-creates it. Of a pull-only table, its delete refuses the merge
// (pendingDependents). In the tables whose text keys the node's database
// does not compare byte for byte (c.keyEq), a remote operation meets the
// node's pending change of the row it holds under another spelling of
// the key (merge.Spellings, merge.md K2).
func (c *Client) newMerger(ctx context.Context, tx bun.Tx, local *merge.Local, late *store.LateDeletes) *merge.Merger {
	return c.newMergerKeeping(ctx, tx, local, late, nil)
}

// newMergerKeeping is newMerger whose D1 keeps rows only of the pushed
// tables keep reports true for (nil: every pushed table).
func (c *Client) newMergerKeeping(ctx context.Context, tx bun.Tx, local *merge.Local, late *store.LateDeletes, keep func(table string) bool) *merge.Merger {
	return merge.NewMerger(c.reg, local, &lookup{ctx: ctx, tx: tx, reg: c.reg, late: late},
		func(t string) merge.Policy { return c.policy(t) },
		merge.Pushes(func(table string) bool {
			t := c.reg.Table(table)
			return t != nil && t.Direction.Pushed() && (keep == nil || keep(table))
		}),
		merge.Spellings(func(table string, keys []string) (map[string]string, error) {
			if c.keyEq[table] == "" {
				return nil, nil
			}
			return store.HeldSpellings(ctx, tx, c.reg.Table(table), keys)
		}))
}

// pendingDependents turns the merge's refusal of rows D1 may not keep
// (*merge.PendingDependentsError: the server deleted rows of pull-only
// tables that the node's pending rows depend on) into
// dbsync.ErrPendingChanges wrapping a *dbsync.ScopeError naming the
// pending rows, which the application points at other rows or gives up
// with DiscardPending (merge.md D1). Other errors are returned as they
// are.
func pendingDependents(err error) error {
	var pd *merge.PendingDependentsError
	if !errors.As(err, &pd) {
		return err
	}
	deleted := make([]string, len(pd.Deleted))
	for i, o := range pd.Deleted {
		deleted[i] = o.Table + " pk " + o.Key
	}
	entries := make([]protocol.ScopeEntry, len(pd.Pending))
	for i, o := range pd.Pending {
		entries[i] = protocol.ScopeEntry{Table: o.Table, PK: o.Key}
	}
	return fmt.Errorf("%w: the server deleted %s, which the node does not push (no push can re-create it) and its pending changes reference; "+
		"point those rows at other rows, or give their changes up with DiscardPending, and sync again: %w",
		dbsync.ErrPendingChanges, strings.Join(deleted, "; "), &dbsync.ScopeError{Entries: entries})
}

// decodedChunk is a chunk line checked and decoded (decodeChunk).
type decodedChunk struct {
	ops     []protocol.Operation               // with canonical keys
	payload map[string]map[string]protocol.Row // by table and key
	rows    int64
}

// decodeChunk checks and decodes a chunk line: its rows by table and key,
// and its operations with canonical keys. A row named twice (by two
// operations, or twice in a table's payload) is a bad answer. It reads only the registry, so
// that a pull decodes the next chunk while it applies one (readAhead).
func (c *Client) decodeChunk(msg *protocol.Message) (*decodedChunk, error) {
	d := &decodedChunk{payload: make(map[string]map[string]protocol.Row, len(msg.Payload))}
	for table, raws := range msg.Payload {
		t := c.reg.Table(table)
		if t == nil || !t.Direction.Pulled() {
			return nil, fmt.Errorf("%w: pull payload for %q, not a pulled table", dbsync.ErrBadResponse, table)
		}
		m := make(map[string]protocol.Row, len(raws))
		for _, raw := range raws {
			row, key, err := keyedRow(t, raw)
			if err != nil {
				return nil, err
			}
			if _, dup := m[key]; dup {
				return nil, duplicateRow("pull", table, key)
			}
			m[key] = row
		}
		d.payload[table] = m
		d.rows += int64(len(raws))
	}
	named := map[merge.Obj]bool{} // the rows the operations name: each once
	for i := range msg.Operations {
		op := &msg.Operations[i]
		t := c.reg.Table(op.Table)
		if t == nil || !t.Direction.Pulled() || !op.Command.Valid() {
			return nil, fmt.Errorf("%w: bad operation %+v (an unknown command, or a table the node does not pull)", dbsync.ErrBadResponse, *op)
		}
		key, err := t.CanonicalKey(op.RowID)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		op.RowID = key
		obj := merge.Obj{Table: t.Name, Key: key}
		if named[obj] {
			return nil, duplicateRow("pull", t.Name, key)
		}
		named[obj] = true
	}
	d.ops = msg.Operations
	return d, nil
}

// lookup answers the merge's questions from the local database.
type lookup struct {
	ctx context.Context
	tx  bun.Tx
	reg *dbsync.Registry
	// late holds rows the pull deleted that are not gone yet: they hold no
	// unique value (applyPlan parks them before a write takes one).
	late *store.LateDeletes
}

func (l *lookup) Rows(table string, keys []string) (map[string]protocol.Row, error) {
	t := l.reg.Table(table)
	out := map[string]protocol.Row{}
	err := store.Load(l.ctx, l.tx, t, keys, func(strct reflect.Value) error {
		raw, err := t.Codec().AppendRow(nil, strct)
		if err != nil {
			return err
		}
		row, err := protocol.ParseRow(raw)
		if err != nil {
			return err
		}
		out[t.Codec().KeyOf(strct)] = row
		return nil
	})
	return out, err
}

func (l *lookup) UniqueHolders(table string, cols []string, rows []protocol.Row) (map[int]string, error) {
	t := l.reg.Table(table)
	structs := make([]reflect.Value, len(rows))
	for i, r := range rows {
		ptr, err := t.Codec().DecodeRow(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		structs[i] = ptr.Elem()
	}
	holders, err := store.UniqueHolders(l.ctx, l.tx, t, cols, structs)
	if err != nil {
		return nil, err
	}
	for i, h := range holders {
		if l.late.Held(t, h) {
			delete(holders, i)
		}
	}
	return holders, nil
}

// keyedRow parses a row the server sent for t, with its key; a malformed
// row is dbsync.ErrBadResponse.
func keyedRow(t *dbsync.Table, raw json.RawMessage) (protocol.Row, string, error) {
	row, err := protocol.ParseRow(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	key, err := t.RowKey(row)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	return row, key, nil
}

// decodeRows decodes rows the server sent for t into t's structs; a
// malformed row is dbsync.ErrBadResponse.
func decodeRows(t *dbsync.Table, raws []json.RawMessage) ([]reflect.Value, error) {
	rows := make([]reflect.Value, len(raws))
	for i, raw := range raws {
		ptr, err := t.Codec().DecodeRaw(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		rows[i] = ptr.Elem()
	}
	return rows, nil
}
