package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
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
	// push writes had before it (nil: NULL; no entry: no row): a node in a
	// row's scope by another rule (a member) may not change its owner.
	owners map[string]map[string]map[string]*string
	// refs holds the same of their openingRefs columns: a reference the
	// push sets must be to a row the node reads.
	refs map[string]map[string]map[string]*string
	// granted holds the memberships the push writes that gave the node
	// access before it (scopeEnv.granted).
	granted map[string][][2]string
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
	g := &scopeGuard{s: s, plan: plan, principal: principal, granted: map[string][][2]string{}}
	var out []protocol.ScopeEntry
	for _, tp := range plan.tables {
		t := tp.table
		if err := checkKeyStep(ctx, tx, t, func() (int64, bool, error) { return topKey(t, tp.keys) }); err != nil {
			return nil, err
		}
		if err := s.scopes.readGrants(ctx, tx, t, slices.Collect(maps.Keys(tp.keys)), principal, g.granted); err != nil {
			return nil, err
		}
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
			// Its rows are in every scope; what they reference is not.
			if err := g.readBefore(ctx, tx, t, tp); err != nil {
				return nil, err
			}
			continue
		}
		keys := make([]string, 0, len(tp.deletes)+len(tp.keys))
		keys = append(keys, tp.deletes...)
		for k := range tp.keys {
			keys = append(keys, k)
		}
		// As the database compares keys: under a text key's collation
		// that ignores case, "ABC" names another user's row "abc", which
		// a delete of "ABC" deletes.
		exist, err := store.ExistingAsAsked(ctx, tx, t, keys, nil)
		if err != nil {
			return nil, err
		}
		in, err := store.ExistingAsAsked(ctx, tx, t, keys, s.scopes.where(t, t.Schema().SQLName, principal))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if exist[k] && !in[k] {
				out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
			}
		}
		if err := g.readBefore(ctx, tx, t, tp); err != nil {
			return nil, err
		}
	}
	return g, scopeRefusal(out)
}

// maxKeyStep bounds how far above the greatest key a table has used
// (dialect.MaxKey) a push to a server with scopes may take the table's
// integer keys. Every node moves its unpushed inserts past that key
// (merge.md K1): one node's row at the top of int64 would leave no key
// for the inserts of any other, whose pulls would fail for good. A node
// that inserts rows takes them from its sequence, past the greatest key
// of its last pull: it stays within the step by far.
const maxKeyStep = 1 << 32

// checkKeyStep refuses (dbsync.ErrBadRequest), for a table with integer
// keys, a push whose greatest key the table writes (top: the key and
// whether it writes any) passes the table's greatest key by more than
// maxKeyStep.
func checkKeyStep(ctx context.Context, tx bun.IDB, t *dbsync.Table, top func() (int64, bool, error)) error {
	if t.KeyKind != protocol.KeyInt {
		return nil
	}
	k, ok, err := top()
	if err != nil || !ok || k <= maxKeyStep {
		return err // within the step of any greatest key (0 or more): not read
	}
	used, err := dialect.MaxKey(ctx, tx, t.Name, t.PK.Name)
	if err != nil {
		return err
	}
	if used <= math.MaxInt64-maxKeyStep && k > used+maxKeyStep {
		return fmt.Errorf("%w: key %d of %s is more than %d above the greatest key the server has used in it (%d): every node's inserts would have to move past it",
			dbsync.ErrBadRequest, k, t.Name, int64(maxKeyStep), used)
	}
	return nil
}

// topKey returns the greatest of keys, integer keys in canonical form,
// and whether there is one.
func topKey(t *dbsync.Table, keys map[string]bool) (int64, bool, error) {
	var top int64
	var ok bool
	for k := range keys {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%w: key %q of %s", dbsync.ErrBadRequest, k, t.Name)
		}
		if !ok || n > top {
			top, ok = n, true
		}
	}
	return top, ok, nil
}

// readBefore records, before the writes, the owner columns and the
// openingRefs columns of the rows the push writes that exist.
func (g *scopeGuard) readBefore(ctx context.Context, tx bun.Tx, t *dbsync.Table, tp *tablePlan) error {
	if len(tp.keys) == 0 {
		return nil
	}
	var refCols []string
	for _, fk := range g.s.scopes.openingRefs(t) {
		refCols = append(refCols, fk.Column)
	}
	for _, c := range []struct {
		cols []string
		into *map[string]map[string]map[string]*string
	}{{g.s.scopes.ownerColumns(t), &g.owners}, {refCols, &g.refs}} {
		if len(c.cols) == 0 {
			continue
		}
		if *c.into == nil {
			*c.into = map[string]map[string]map[string]*string{}
		}
		byCol := map[string]map[string]*string{}
		for _, col := range c.cols {
			vals, err := columnValues(ctx, tx, t, col, tp.keys)
			if err != nil {
				return err
			}
			byCol[col] = vals
		}
		(*c.into)[t.Name] = byCol
	}
	return nil
}

// columnValues reads a column of the rows with the given keys, as text
// (nil: NULL); rows that do not exist have no entry.
func columnValues(ctx context.Context, tx bun.IDB, t *dbsync.Table, col string, keys map[string]bool) (map[string]*string, error) {
	out := map[string]*string{}
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
			out[k] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// after checks that every row the push wrote is in the node's scope, and
// that the membership rows it wrote name rows the node holds
// (scoper.ungranted).
func (g *scopeGuard) after(ctx context.Context, tx bun.Tx) error {
	if g == nil {
		return nil
	}
	// Memberships the push writes do not count: a node may share what it
	// holds, not give itself access. Those that gave it access before
	// count as they were.
	env := &scopeEnv{principal: g.principal, write: true, ignore: map[string][]any{}, granted: g.granted}
	for _, tp := range g.plan.tables {
		for k := range tp.keys {
			v, err := tp.table.ParseKey(k)
			if err != nil {
				return err
			}
			env.ignore[tp.table.Name] = append(env.ignore[tp.table.Name], v)
		}
	}
	read := *env
	read.write = false
	var out []protocol.ScopeEntry
	var respelt *respelling
	for _, tp := range g.plan.tables {
		t := tp.table
		if len(tp.keys) == 0 {
			continue
		}
		opened, err := g.newRefs(ctx, tx, tp, &read)
		if err != nil {
			return err
		}
		for _, k := range opened {
			out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
		ungranted, err := g.s.scopes.ungranted(ctx, tx, t, tp.keys, env)
		if err != nil {
			return err
		}
		for _, k := range ungranted {
			out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
		if g.s.scopes.global(t) {
			continue
		}
		keys := make([]string, 0, len(tp.keys))
		for k := range tp.keys {
			keys = append(keys, k)
		}
		cond := g.s.scopes.cond(t, g.s.scopes.rules[t.Name], t.Schema().SQLName, env, 0)
		in, err := store.ExistingWhere(ctx, tx, t, keys, cond)
		if err != nil {
			return err
		}
		missing, other, err := respelled(ctx, tx, t, keys, in, cond)
		if err != nil {
			return err
		}
		for _, k := range missing {
			out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
		respelt = respelt.add(t, other)
		changed, err := g.changedOwners(ctx, tx, tp)
		if err != nil {
			return err
		}
		for _, k := range changed {
			out = append(out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
	}
	if err := scopeRefusal(out); err != nil {
		return err
	}
	return respelt.refusal(ctx, tx)
}

// newRefs returns, after the writes, the keys of the rows of tp whose
// openingRefs column the push set (a new row, a changed value) to a row
// that exists and that the node does not read by that row's own rule
// (env: read, memberships the push writes not counted). A row it does
// not reference yet is written by the push, in scope, or refused by the
// reference check.
func (g *scopeGuard) newRefs(ctx context.Context, tx bun.Tx, tp *tablePlan, env *scopeEnv) ([]string, error) {
	var out []string
	for _, fk := range g.s.scopes.openingRefs(tp.table) {
		after, err := columnValues(ctx, tx, tp.table, fk.Column, tp.keys)
		if err != nil {
			return nil, err
		}
		before := g.refs[tp.table.Name][fk.Column]
		children := map[string][]string{} // by the parent they now reference
		for k, v := range after {
			if old, had := before[k]; v != nil && (!had || old == nil || *old != *v) {
				children[*v] = append(children[*v], k)
			}
		}
		if len(children) == 0 {
			continue
		}
		parent := g.s.scopes.reg.Table(fk.RefTable) // (the server's: a view may lack it)
		keys := make([]string, 0, len(children))
		for k := range children {
			keys = append(keys, k)
		}
		// As the database compares keys: under a text key's collation
		// that ignores case, a reference to "ABC" is one to another
		// user's row "abc", which would become readable.
		exist, err := store.ExistingAsAsked(ctx, tx, parent, keys, nil)
		if err != nil {
			return nil, err
		}
		in, err := store.ExistingAsAsked(ctx, tx, parent, keys, g.s.scopes.cond(parent, g.s.scopes.rules[parent.Name], parent.Schema().SQLName, env, 0))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if exist[k] && !in[k] {
				out = append(out, children[k]...)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// changedOwners returns the keys of the rows of tp whose owner column the
// push changed although the node did not own them by it (readBefore read
// the values before the writes).
func (g *scopeGuard) changedOwners(ctx context.Context, tx bun.Tx, tp *tablePlan) ([]string, error) {
	var out []string
	for col, before := range g.owners[tp.table.Name] {
		after, err := columnValues(ctx, tx, tp.table, col, tp.keys)
		if err != nil {
			return nil, err
		}
		for k, old := range before {
			now := after[k]
			same := (now == nil) == (old == nil) && (old == nil || *now == *old)
			// A row without owner (NULL) is owned by no one: nobody takes
			// it over.
			if !same && (g.principal == nil || old == nil || *old != *g.principal) {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// withRefusal returns err when refused (a scope refusal found before the
// push's writes) is nil; else refused, with the rows of err if it is a
// scope refusal too (found by the check after the writes). Another error
// of the writes that ran on after refused is not the node's to see.
func withRefusal(refused *dbsync.ScopeError, err error) error {
	if refused == nil {
		return err
	}
	var more *dbsync.ScopeError
	if errors.As(err, &more) {
		return scopeRefusal(append(slices.Clone(refused.Entries), more.Entries...))
	}
	return refused
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
