package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// maxSequenceKey bounds the server's greatest key that a table's sequence
// is moved to (room above it for 2^32 inserts).
const maxSequenceKey = math.MaxInt64 - 1<<32

// renumber applies merge.Renumber (K1): the node's unpushed inserts whose
// integer keys the server may use move to fresh keys (moveRow), and every
// local reference follows; the key sequences then move past the server's
// greatest keys and the new keys (advanceSequences). A negative greatest
// key, or one that leaves no room for the keys to move to, is a bad
// answer.
func (c *Client) renumber(ctx context.Context, tx bun.Tx, local *merge.Local, serverMax map[string]int64) ([]merge.Move, error) {
	for t, k := range serverMax {
		if k < 0 {
			return nil, fmt.Errorf("%w: the server's greatest key of %s is %d", dbsync.ErrBadResponse, t, k)
		}
	}
	localMax := map[string]int64{}
	for _, t := range c.reg.Tables() {
		if t.KeyKind != protocol.KeyInt {
			continue
		}
		m, err := dialect.MaxKey(ctx, tx, t.Name, t.PK.Name)
		if err != nil {
			return nil, err
		}
		localMax[t.Name] = m
	}
	moves, err := merge.Renumber(c.reg, local, serverMax, localMax)
	if err != nil {
		return nil, err
	}
	for _, mv := range moves {
		// Past the top of int64 a key wraps around.
		if mv.To <= mv.From || mv.To <= 0 {
			return nil, fmt.Errorf("%w: no key is left above the server's greatest key of %s (%d) for the node's row %d",
				dbsync.ErrBadResponse, mv.Table, serverMax[mv.Table], mv.From)
		}
	}
	for _, mv := range moves {
		if err := c.moveRow(ctx, tx, mv); err != nil {
			return nil, err
		}
	}
	if err := c.advanceSequences(ctx, tx, moves, serverMax); err != nil {
		return nil, err
	}
	if len(moves) > 0 {
		c.log.InfoContext(ctx, "client: unpushed inserts renumbered", slog.Int("rows", len(moves)))
	}
	return moves, nil
}

// moveRow gives a row its new key, in the table, in the rows that
// reference it and in the node's pending log.
func (c *Client) moveRow(ctx context.Context, tx bun.Tx, mv merge.Move) error {
	t := c.reg.Table(mv.Table)
	if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(t.Name)).Set("? = ?", bun.Ident(t.PK.Name), mv.To).
		Where("? = ?", bun.Ident(t.PK.Name), mv.From).Exec(ctx); err != nil {
		return fmt.Errorf("renumber %s %d: %w", t.Name, mv.From, err)
	}
	for _, ch := range c.reg.Children(t.Name) {
		if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(ch.Table.Name)).Set("? = ?", bun.Ident(ch.FK.Column), mv.To).
			Where("? = ?", bun.Ident(ch.FK.Column), mv.From).Exec(ctx); err != nil {
			return fmt.Errorf("renumber references to %s %d: %w", t.Name, mv.From, err)
		}
	}
	_, err := tx.NewUpdate().Model((*models.Operation)(nil)).Set("row_id = ?", fmt.Sprint(mv.To)).
		Where("content_type_id = ? AND row_id = ? AND version_id IS NULL", t.ContentTypeID, fmt.Sprint(mv.From)).Exec(ctx)
	return err
}

// advanceSequences moves the key sequences of the tables with integer
// keys past the server's greatest keys and past the keys the moves gave.
//
// Past the server's: a key the server has used and whose row it deleted
// before the node ever pulled it is not in the node's database, so the
// node's own sequence may still be below it; an insert taking it would be
// pushed over the deleted row's key, and a node still holding that row
// with a pending update would read the delete and the new insert as one
// row updated, and push its update over the new row (which was lost).
// Past the moves': a key taken by an UPDATE does not advance the table's
// sequence (SQLite's AUTOINCREMENT counter, PostgreSQL's serial): without
// this, once a moved row is deleted a later insert reuses its key, and the
// log reads that delete and the new insert as one row updated (d … i),
// which K1 never moves.
func (c *Client) advanceSequences(ctx context.Context, tx bun.Tx, moves []merge.Move, serverMax map[string]int64) error {
	top := map[string]int64{}
	for _, t := range c.reg.Tables() {
		// A key near the top of int64 leaves the sequence where it is:
		// room for the node's inserts (K1 moves them past it).
		if m := serverMax[t.Name]; t.KeyKind == protocol.KeyInt && m > 0 && m <= maxSequenceKey {
			top[t.Name] = m
		}
	}
	for _, mv := range moves {
		top[mv.Table] = max(top[mv.Table], mv.To)
	}
	for table, to := range top {
		t := c.reg.Table(table)
		if err := dialect.AdvanceSequence(ctx, tx, t.Name, t.PK.Name, to); err != nil {
			return err
		}
	}
	return nil
}

// unrenumber names the rows of a unique conflict (U4), or of a scope error
// (pending changes to rows that left the scope), by the keys they have
// again once the failed pull is rolled back: before K1 moved them.
func unrenumber(err error, moves []merge.Move) error {
	var uc *dbsync.UniqueConstraintError
	var se *dbsync.ScopeError
	if len(moves) == 0 || !errors.As(err, &uc) && !errors.As(err, &se) {
		return err
	}
	back := make(map[merge.Obj]string, len(moves))
	for _, mv := range moves {
		back[merge.Obj{Table: mv.Table, Key: fmt.Sprint(mv.To)}] = fmt.Sprint(mv.From)
	}
	if uc != nil {
		for i, en := range uc.Entries {
			if k, ok := back[merge.Obj{Table: en.Table, Key: en.PK}]; ok {
				uc.Entries[i].PK = k
			}
		}
	}
	if se != nil {
		for i, en := range se.Entries {
			if k, ok := back[merge.Obj{Table: en.Table, Key: en.PK}]; ok {
				se.Entries[i].PK = k
			}
		}
	}
	return err
}

// renumbered returns entries named by the keys moves (K1, in the order
// the pulls made them) gave their rows, sorted as a refusal's are; entries
// itself when nothing moved.
func renumbered(entries []protocol.ScopeEntry, moves []merge.Move) []protocol.ScopeEntry {
	if len(moves) == 0 {
		return entries
	}
	out := slices.Clone(entries)
	type key struct{ table, pk string }
	at := make(map[key][]int, len(out)) // the entries naming each row
	for i, en := range out {
		at[key{en.Table, en.PK}] = append(at[key{en.Table, en.PK}], i)
	}
	for _, mv := range moves {
		from := key{mv.Table, strconv.FormatInt(mv.From, 10)}
		is, ok := at[from]
		if !ok {
			continue
		}
		delete(at, from)
		to := key{mv.Table, strconv.FormatInt(mv.To, 10)}
		for _, i := range is {
			out[i].PK = to.pk
		}
		at[to] = append(at[to], is...)
	}
	slices.SortFunc(out, func(a, b protocol.ScopeEntry) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.PK, b.PK))
	})
	return slices.Compact(out)
}
