package server

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// scopeGuard checks a push against the pushing node's scope, in the push
// transaction, in two steps around the writes: before, every row the push
// updates or deletes must be in the node's scope (or not exist); after,
// every row it writes must be in the scope, so that a push can neither
// touch another principal's row nor move a row out of its own reach (an
// owner changed to someone else, a row re-parented to a list the node is
// not a member of). A refusal is a *dbsync.ScopeError naming the rows;
// the transaction rolls back, nothing of the push is written.
type scopeGuard struct {
	s         *Server
	plan      *pushPlan
	principal *string
	// owners holds, per table and OwnedBy column, the values the rows the
	// push writes had before it: a node in a row's scope by another rule
	// (a member) may not change its owner.
	owners map[string]map[string]map[string]string
}

// guardScope runs the first step (nil guard and no error when scopes are
// off); call after on the guard once the push's rows are written.
func (s *Server) guardScope(ctx context.Context, tx bun.Tx, node int64, plan *pushPlan) (*scopeGuard, error) {
	if s.scopes == nil || plan == nil {
		return nil, nil
	}
	principal, err := s.principal(ctx, tx, node)
	if err != nil {
		return nil, err
	}
	g := &scopeGuard{s: s, plan: plan, principal: principal}
	var out []protocol.ScopeEntry
	for _, tp := range plan.tables {
		t := tp.table
		if !s.scopes.writable(t) {
			for _, k := range tp.deletes {
				out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
			}
			for k := range tp.keys {
				out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
			}
			continue
		}
		if s.scopes.global(t) {
			continue
		}
		keys := make([]string, 0, len(tp.deletes)+len(tp.keys))
		keys = append(keys, tp.deletes...)
		for k := range tp.keys {
			keys = append(keys, k)
		}
		exist, err := store.Existing(ctx, tx, t, keys)
		if err != nil {
			return nil, err
		}
		in, err := store.ExistingWhere(ctx, tx, t, keys, s.scopes.where(t, t.Schema().SQLName, principal))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if exist[k] && !in[k] {
				out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
			}
		}
		if err := g.readOwners(ctx, tx, t, tp); err != nil {
			return nil, err
		}
	}
	return g, scopeRefusal(out)
}

// readOwners records the owner columns of the rows the push writes that
// exist (before the writes, or after them when g.owners is filled: then
// it returns the rows whose owner changed).
func (g *scopeGuard) readOwners(ctx context.Context, tx bun.Tx, t *dbsync.Table, tp *tablePlan) error {
	cols := g.s.scopes.ownerColumns(t)
	if len(cols) == 0 || len(tp.keys) == 0 {
		return nil
	}
	if g.owners == nil {
		g.owners = map[string]map[string]map[string]string{}
	}
	byCol := map[string]map[string]string{}
	for _, col := range cols {
		vals, err := ownerValues(ctx, tx, t, col, tp.keys)
		if err != nil {
			return err
		}
		byCol[col] = vals
	}
	g.owners[t.Name] = byCol
	return nil
}

// ownerValues reads a column of the rows with the given keys, as text.
func ownerValues(ctx context.Context, tx bun.Tx, t *dbsync.Table, col string, keys map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	list := make([]any, 0, len(keys))
	for k := range keys {
		v, err := t.ParseKey(k)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	for start := 0; start < len(list); start += store.Batch {
		rows, err := tx.QueryContext(ctx, "SELECT CAST(? AS TEXT), CAST(? AS TEXT) FROM ? WHERE ? IN (?)",
			bun.Ident(t.PK.Name), bun.Ident(col), bun.Ident(t.Name), bun.Ident(t.PK.Name), bun.List(list[start:min(start+store.Batch, len(list))]))
		if err != nil {
			return nil, fmt.Errorf("read %s.%s: %w", t.Name, col, err)
		}
		for rows.Next() {
			var k string
			var v *string
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return nil, err
			}
			if v != nil {
				out[k] = *v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// after checks that every row the push wrote is in the node's scope.
func (g *scopeGuard) after(ctx context.Context, tx bun.Tx) error {
	if g == nil {
		return nil
	}
	// Memberships the push writes do not count: a node may share what it
	// holds, not give itself access.
	env := &scopeEnv{principal: g.principal, write: true, ignore: map[string][]any{}}
	for _, tp := range g.plan.tables {
		for k := range tp.keys {
			v, err := tp.table.ParseKey(k)
			if err != nil {
				return err
			}
			env.ignore[tp.table.Name] = append(env.ignore[tp.table.Name], v)
		}
	}
	var out []protocol.ScopeEntry
	for _, tp := range g.plan.tables {
		t := tp.table
		if g.s.scopes.global(t) || len(tp.keys) == 0 {
			continue
		}
		keys := make([]string, 0, len(tp.keys))
		for k := range tp.keys {
			keys = append(keys, k)
		}
		in, err := store.ExistingWhere(ctx, tx, t, keys, g.s.scopes.cond(t, g.s.scopes.rules[t.Name], t.Schema().SQLName, env, 0))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !in[k] {
				out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
			}
		}
		changed, err := g.changedOwners(ctx, tx, tp)
		if err != nil {
			return err
		}
		for _, k := range changed {
			out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
	}
	return scopeRefusal(out)
}

// changedOwners returns the keys of the rows of tp whose owner column the
// push changed although the node did not own them by it (readOwners read
// the values before the writes).
func (g *scopeGuard) changedOwners(ctx context.Context, tx bun.Tx, tp *tablePlan) ([]string, error) {
	var out []string
	for col, before := range g.owners[tp.table.Name] {
		after, err := ownerValues(ctx, tx, tp.table, col, tp.keys)
		if err != nil {
			return nil, err
		}
		for k, old := range before {
			if after[k] != old && (g.principal == nil || old != *g.principal) {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// scopeRefusal is the error of rows out of scope (each named once), nil
// when there are none.
func scopeRefusal(out []protocol.ScopeEntry) error {
	if len(out) == 0 {
		return nil
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].PK < out[j].PK
	})
	return &dbsync.ScopeError{Entries: slices.Compact(out)}
}
