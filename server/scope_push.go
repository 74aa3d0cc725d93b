package server

import (
	"context"
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
	}
	return g, scopeRefusal(out)
}

// after checks that every row the push wrote is in the node's scope.
func (g *scopeGuard) after(ctx context.Context, tx bun.Tx) error {
	if g == nil {
		return nil
	}
	// Memberships the push writes do not count: a node may share what it
	// holds, not give itself access.
	env := &scopeEnv{principal: g.principal, ignore: map[string][]any{}}
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
	}
	return scopeRefusal(out)
}

// scopeRefusal is the error of rows out of scope, nil when there are none.
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
	return &dbsync.ScopeError{Entries: out}
}
