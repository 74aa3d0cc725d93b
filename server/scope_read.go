package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// readWhere returns the condition that a row of t, qualified by qual, is
// readable by principal: in its scope, or a parent a readable row of a
// child table references (its foreign key needs it on the node). A child
// whose rule is ThroughParent on that very foreign key adds nothing, its
// parents being in scope already, unless rows of it are readable beyond
// its rule (widened).
func (s *scoper) readWhere(t *dbsync.Table, qual schema.QueryAppender, principal *string) schema.QueryAppender {
	return s.readCond(t, qual, &scopeEnv{principal: principal}, 0, map[string]bool{t.Name: true})
}

func (s *scoper) readCond(t *dbsync.Table, qual schema.QueryAppender, env *scopeEnv, depth int, path map[string]bool) schema.QueryAppender {
	if cycle := s.cycles[t.Name]; cycle != nil && !s.global(t) {
		return s.cycleCond(t, cycle, qual, env, depth, path)
	}
	return s.ownCond(t, nil, qual, env, depth, path)
}

// ownCond is readCond's condition of a row of t: in scope by its rule,
// or referenced by a readable row of a child table, the children of the
// tables in cycle left out (cycleCond follows those references).
func (s *scoper) ownCond(t *dbsync.Table, cycle []*dbsync.Table, qual schema.QueryAppender, env *scopeEnv, depth int, path map[string]bool) schema.QueryAppender {
	base := s.cond(t, s.rules[t.Name], qual, env, depth)
	if s.global(t) {
		return base
	}
	query, args := "(?)", []any{base}
	for _, ch := range s.reg.Children(t.Name) {
		c := ch.Table
		if slices.Contains(cycle, c) {
			continue
		}
		if c.Name == t.Name && c.Direction.Pulled() && !path["\x00up "+t.Name] {
			// A table referencing itself (a tree): the ancestors of its
			// readable rows, up to the root, whatever their own rule says
			// (the rows' foreign keys need them on the node).
			if r := s.rules[t.Name]; r.kind == ruleParent && r.column == ch.FK.Column {
				continue
			}
			a, b := bun.Ident("dbsync_tree"+strconv.Itoa(depth)), bun.Ident("dbsync_up"+strconv.Itoa(depth))
			anc := bun.Ident("dbsync_anc" + strconv.Itoa(depth))
			fk, pk, tbl := bun.Ident(ch.FK.Column), bun.Ident(t.PK.Name), bun.Ident(t.Name)
			// Rows readable otherwise (t is on path already, and its
			// ancestors are not asked again inside).
			path["\x00up "+t.Name] = true
			inner := s.readCond(t, a, env, depth+1, path)
			delete(path, "\x00up "+t.Name)
			query += " OR ?.? IN (WITH RECURSIVE ? (k) AS (SELECT ?.? FROM ? AS ? WHERE ? UNION SELECT ?.? FROM ? AS ?, ? WHERE ?.? = ?.k) SELECT k FROM ?)"
			args = append(args, qual, pk, anc, a, fk, tbl, a, inner, b, fk, tbl, b, anc, b, pk, anc, anc)
			continue
		}
		if !c.Direction.Pulled() || path[c.Name] {
			continue
		}
		if r := s.rules[c.Name]; r.kind == ruleParent && r.column == ch.FK.Column && !selfReferencing(c) && !s.widened(c, path) {
			// Its rows in scope have their parent in scope, and no other
			// row of it is readable. (A tree's rows may also be read as
			// ancestors: their parents then.)
			continue
		}
		alias := bun.Ident("dbsync_need" + strconv.Itoa(depth))
		path[c.Name] = true
		inner := s.readCond(c, alias, env, depth+1, path)
		delete(path, c.Name)
		query += " OR ?.? IN (SELECT ?.? FROM ? AS ? WHERE ?)"
		args = append(args, qual, bun.Ident(t.PK.Name), alias, bun.Ident(ch.FK.Column), bun.Ident(c.Name), alias, inner)
	}
	return bun.SafeQuery("("+query+")", args...)
}

// cycleCond is readCond's condition of a row of t, a table on a cycle of
// foreign keys between scoped tables (projects referencing their current
// milestone, milestones their project): a row readable by ownCond, or the
// parent of a readable row of a table of the cycle, which may be readable
// only as the parent of another, and so on around the cycle with no fixed
// depth. One recursive query reads them all: a row per readable row of
// the cycle's tables, with its table's number (tn) and its key in that
// table's column (k0, k1, …; the others NULL, typed by the tables' keys,
// as PostgreSQL wants a recursive query's columns), and each step
// follows every foreign key within the cycle from the rows found to their
// parents (the recursive table named once, as PostgreSQL requires: each
// row found fanned out over the foreign keys, each of which looks its
// row's parent up).
func (s *scoper) cycleCond(t *dbsync.Table, cycle []*dbsync.Table, qual schema.QueryAppender, env *scopeEnv, depth int, path map[string]bool) schema.QueryAppender {
	type edge struct {
		child, parent int
		fk            string
	}
	var edges []edge
	for pi, p := range cycle {
		for _, ch := range s.reg.Children(p.Name) {
			if ci := slices.Index(cycle, ch.Table); ci >= 0 {
				edges = append(edges, edge{child: ci, parent: pi, fk: ch.FK.Column})
			}
		}
	}
	d := strconv.Itoa(depth)
	rec := bun.Ident("dbsync_cycle" + d)
	col := func(i int) bun.Ident { return bun.Ident("k" + strconv.Itoa(i)) }
	cols := make([]string, len(cycle))
	colArgs := make([]any, len(cycle))
	for i := range cycle {
		cols[i] = "?"
		colArgs[i] = col(i)
	}
	query := "?.? IN (WITH RECURSIVE ? (tn, " + strings.Join(cols, ", ") + ") AS ("
	args := append([]any{qual, bun.Ident(t.PK.Name), rec}, colArgs...)
	// The rows readable on their own (their rule, the parents of readable
	// rows of tables off the cycle); the cycle's tables are on path while
	// those are asked.
	for _, c := range cycle {
		path[c.Name] = true
	}
	for m, u := range cycle {
		a := bun.Ident("dbsync_cyc" + d + "_" + strconv.Itoa(m))
		if m > 0 {
			query += " UNION "
		}
		query += "SELECT " + strconv.Itoa(m)
		for i, v := range cycle {
			if i == m {
				query += ", ?.?"
				args = append(args, a, bun.Ident(u.PK.Name))
				continue
			}
			z := bun.Ident("dbsync_cycz" + d)
			query += ", (SELECT ?.? FROM ? AS ? WHERE 1 = 0)"
			args = append(args, z, bun.Ident(v.PK.Name), bun.Ident(v.Name), z)
		}
		query += " FROM ? AS ? WHERE ?"
		args = append(args, bun.Ident(u.Name), a, s.ownCond(u, cycle, a, env, depth+1, path))
	}
	for _, c := range cycle {
		delete(path, c.Name)
	}
	// The step: for each row found and each foreign key within the
	// cycle from its table, the parent it references, looked up by key
	// (a correlated subquery: an index lookup, where a join would let
	// PostgreSQL's planner, which cannot know how few rows a step
	// finds, hash whole tables at every step).
	sel := bun.Ident("dbsync_cycsel" + d)
	x := func(j int) bun.Ident { return bun.Ident("dbsync_cycx" + d + "_" + strconv.Itoa(j)) }
	y := func(j int) bun.Ident { return bun.Ident("dbsync_cycy" + d + "_" + strconv.Itoa(j)) }
	query += " UNION SELECT CASE ?.j"
	args = append(args, sel)
	for j, e := range edges {
		query += " WHEN " + strconv.Itoa(j) + " THEN " + strconv.Itoa(e.parent)
	}
	query += " END"
	for i, v := range cycle {
		query += ", CASE ?.j"
		args = append(args, sel)
		for j, e := range edges {
			if e.parent != i {
				continue
			}
			c := cycle[e.child]
			query += " WHEN " + strconv.Itoa(j) + " THEN (SELECT ?.? FROM ? AS ? JOIN ? AS ? ON ?.? = ?.? WHERE ?.? = ?.?)"
			args = append(args, y(j), bun.Ident(v.PK.Name), bun.Ident(c.Name), x(j), bun.Ident(v.Name), y(j),
				y(j), bun.Ident(v.PK.Name), x(j), bun.Ident(e.fk), x(j), bun.Ident(c.PK.Name), rec, col(e.child))
		}
		query += " END"
	}
	fan := make([]string, len(edges))
	for j := range edges {
		fan[j] = "SELECT " + strconv.Itoa(j) + " AS j"
	}
	query += " FROM ? CROSS JOIN (" + strings.Join(fan, " UNION ALL ") + ") AS ? WHERE CASE ?.j"
	args = append(args, rec, sel, sel)
	for j, e := range edges {
		query += " WHEN " + strconv.Itoa(j) + " THEN ?.?"
		args = append(args, rec, col(e.child))
	}
	// A row without a parent there (a NULL reference) is a row of NULL
	// keys, which the next step skips and the result leaves out.
	ti := slices.Index(cycle, t)
	query += " END IS NOT NULL) SELECT ? FROM ? WHERE tn = ? AND ? IS NOT NULL)"
	args = append(args, col(ti), rec, ti, col(ti))
	return bun.SafeQuery("("+query+")", args...)
}

// findCycles returns the tables on cycles of foreign keys between
// pulled, scoped tables (strongly connected components of two or more
// tables; Tarjan's algorithm), each mapped to its cycle's tables in
// registry order. A table referencing only itself is a tree, which
// ownCond reads with its own recursive query.
func (s *scoper) findCycles() map[string][]*dbsync.Table {
	var nodes []*dbsync.Table
	for _, t := range s.reg.Tables() {
		if t.Direction.Pulled() && !s.global(t) {
			nodes = append(nodes, t)
		}
	}
	index := map[*dbsync.Table]int{}
	low := map[*dbsync.Table]int{}
	onStack := map[*dbsync.Table]bool{}
	var stack []*dbsync.Table
	out := map[string][]*dbsync.Table{}
	var visit func(t *dbsync.Table)
	visit = func(t *dbsync.Table) {
		index[t], low[t] = len(index), len(index)
		stack = append(stack, t)
		onStack[t] = true
		for _, fk := range t.ForeignKeys {
			p := s.reg.Table(fk.RefTable)
			if p == nil || p == t || !slices.Contains(nodes, p) {
				continue
			}
			if _, seen := index[p]; !seen {
				visit(p)
				low[t] = min(low[t], low[p])
			} else if onStack[p] {
				low[t] = min(low[t], index[p])
			}
		}
		if low[t] != index[t] {
			return
		}
		var comp []*dbsync.Table
		for {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[top] = false
			comp = append(comp, top)
			if top == t {
				break
			}
		}
		if len(comp) < 2 {
			return
		}
		var cycle []*dbsync.Table
		for _, n := range nodes {
			if slices.Contains(comp, n) {
				cycle = append(cycle, n)
			}
		}
		for _, n := range cycle {
			out[n.Name] = cycle
		}
	}
	for _, t := range nodes {
		if _, seen := index[t]; !seen {
			visit(t)
		}
	}
	return out
}

// widened reports whether rows of t may be readable beyond its own rule:
// the parents of a pulled child table's readable rows are (readCond),
// unless the child's rule is ThroughParent on that foreign key and
// nothing widens the child in turn. A grandchild owned by the principal
// keeps its parent readable, and that parent's own parent with it. path
// holds the tables being asked already.
func (s *scoper) widened(t *dbsync.Table, path map[string]bool) bool {
	if s.global(t) {
		return false
	}
	if s.cycles[t.Name] != nil {
		// Its rows may be readable as the parents of rows around the
		// cycle (cycleCond).
		return true
	}
	path[t.Name] = true
	defer delete(path, t.Name)
	for _, ch := range s.reg.Children(t.Name) {
		c := ch.Table
		if !c.Direction.Pulled() {
			continue
		}
		r := s.rules[c.Name]
		if r.kind == ruleParent && r.column == ch.FK.Column {
			if c.Name == t.Name || (!path[c.Name] && !selfReferencing(c) && !s.widened(c, path)) {
				continue
			}
		}
		if path[c.Name] && c.Name != t.Name {
			continue
		}
		return true
	}
	return false
}

// selfReferencing reports whether t has a foreign key to itself (a tree).
func selfReferencing(t *dbsync.Table) bool {
	for _, fk := range t.ForeignKeys {
		if fk.RefTable == t.Name {
			return true
		}
	}
	return false
}

// readFilter returns the condition of the rows of t node may read,
// qualified by qual; nil when it reads every row (no scopes, a global
// table).
func (s *Server) readFilter(ctx context.Context, db bun.IDB, node int64, t *dbsync.Table, qual schema.QueryAppender) (schema.QueryAppender, error) {
	if s.scopes.global(t) {
		return nil, nil
	}
	principal, err := s.principal(ctx, db, node)
	if err != nil {
		return nil, err
	}
	return s.scopes.readWhere(t, qual, principal), nil
}

// pullScope is what a pull on a scoped server knows of the node's scope:
// the keys it may read now and those it holds, per scoped table. Operations
// of rows it may not read are left out (deletes: of rows it does not
// hold); rows it holds and may no longer read leave (scope_out), rows it
// may read and does not hold arrive (scope_in). Memory is bounded by the
// node's share of the tables, not by the tables.
//
// A global table the request lists held keys of (it was scoped at the
// node's last pull, or the node lists every pulled table) is one of the
// tables too, every row of it in scope (all): none leaves, and the rows
// the node lacks arrive, read a page of keys at a time rather than
// loaded (its share is the whole table). So a table server.Config.Scopes
// made global is complete on the node after one pull, whose header no
// longer names it: the node lists its keys no more.
type pullScope struct {
	tables  []*dbsync.Table // scoped pulled tables and all's, dependency order
	all     map[string]bool // global tables of held keys: every row in scope
	in      map[string]map[string]bool
	held    map[string]map[string]bool
	sent    map[string]map[string]bool // rows written by the pull's chunks
	deleted map[string]map[string]bool // rows deleted by them
	chunk   int
	// s and wanted load the parents of the rows entering the scope that
	// the node deleted (merge.md D2): wanted as a chunk's.
	s      *Server
	wanted map[string]map[string]bool
}

// newPullScope checks and reads the keys a pull says the node holds; nil
// when the server has no scopes. It reads no database, so that a pull is
// refused for its held keys before anything is written (its push id
// marked abandoned, the node's activity): a request without held keys,
// or without those of a scoped table (dbsync.ErrHeldKeysNeeded), with
// keys of a table that is not pulled
// (dbsync.ErrUnknownTable) or a key not of its table's kind. The keys the
// node may read are read by load, in the pull's snapshot.
func (s *Server) newPullScope(req *protocol.PullRequest, chunk int) (*pullScope, error) {
	if s.scopes == nil {
		return nil, nil
	}
	var tables []*dbsync.Table
	all := map[string]bool{}
	for _, t := range s.reg.Tables() {
		if !t.Direction.Pulled() {
			continue
		}
		if s.scopes.global(t) {
			if _, held := req.Held[t.Name]; !held {
				continue
			}
			all[t.Name] = true
		}
		tables = append(tables, t)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	if req.Held == nil {
		return nil, fmt.Errorf("%w: this server holds nodes to scopes; send the keys of the rows the node holds", dbsync.ErrHeldKeysNeeded)
	}
	ps := &pullScope{all: all, in: map[string]map[string]bool{}, held: map[string]map[string]bool{},
		sent: map[string]map[string]bool{}, deleted: map[string]map[string]bool{}, chunk: chunk,
		s: s, wanted: wantedParents(req.Deleted)}
	for name := range req.Held {
		if t := s.reg.Table(name); t == nil || !t.Direction.Pulled() {
			return nil, fmt.Errorf("%w: held keys of %q, not a pulled table", dbsync.ErrUnknownTable, name)
		}
	}
	ps.tables = tables
	for _, t := range tables {
		held := make(map[string]bool, len(req.Held[t.Name]))
		for _, k := range req.Held[t.Name] {
			ck, err := t.CanonicalKey(k)
			if err != nil {
				return nil, err
			}
			held[ck] = true
		}
		ps.held[t.Name] = held
		ps.sent[t.Name], ps.deleted[t.Name] = map[string]bool{}, map[string]bool{}
	}
	// A scoped table the request does not list (its node's last pull
	// header did not name it: server.Config.Scopes changed since) would
	// count as holding no row, and the rows of it the node may no longer
	// read would stay there until its next pull: ask for its keys, of a
	// node that asks again with them (HeldRetry; an earlier release's
	// node gets the answer as before, and lists them at its next pull).
	var missing []string
	for _, t := range tables {
		if _, ok := req.Held[t.Name]; !ok && !all[t.Name] {
			missing = append(missing, t.Name)
		}
	}
	if len(missing) > 0 && req.HeldRetry {
		return nil, fmt.Errorf("%w: this server holds nodes to scopes in tables %s; send the keys of the rows the node holds of each",
			dbsync.ErrHeldKeysNeeded, strings.Join(missing, ", "))
	}
	return ps, nil
}

// load reads the keys of the rows node may read now, in tx (the pull's
// snapshot).
func (ps *pullScope) load(ctx context.Context, tx bun.IDB, node int64) error {
	if ps == nil {
		return nil
	}
	s := ps.s
	principal, err := s.principal(ctx, tx, node)
	if err != nil {
		return err
	}
	for _, t := range ps.tables {
		if ps.all[t.Name] {
			continue // read a page at a time by end
		}
		if ps.in[t.Name], err = store.KeysWhere(ctx, tx, t, s.scopes.readWhere(t, t.Schema().SQLName, principal)); err != nil {
			return err
		}
	}
	return nil
}

// names lists the scoped tables, for the pull header: not all's, whose
// keys the node's next pull need not list.
func (ps *pullScope) names() []string {
	if ps == nil {
		return nil
	}
	var out []string
	for _, t := range ps.tables {
		if !ps.all[t.Name] {
			out = append(out, t.Name)
		}
	}
	return out
}

// inScope reports whether the node may read the row of table with key k.
func (ps *pullScope) inScope(table, k string) bool {
	return ps.all[table] || ps.in[table][k]
}

// keep reports whether a compressed operation goes to the node (every one
// of a global table); it notes the rows of ps.tables the chunks write, and
// those of scoped tables they delete.
func (ps *pullScope) keep(op protocol.Operation) bool {
	if ps == nil || ps.held[op.Table] == nil {
		return true
	}
	if op.Command == models.Delete {
		if ps.all[op.Table] {
			return true // nothing moves out of a global table
		}
		if !ps.held[op.Table][op.RowID] {
			return false
		}
		ps.deleted[op.Table][op.RowID] = true
		return true
	}
	if !ps.inScope(op.Table, op.RowID) {
		return false
	}
	ps.sent[op.Table][op.RowID] = true
	return true
}

// entering hands fn, in batches, the keys of the rows of t the node may
// read and neither holds nor was sent by the pull's chunks: those of a
// scoped table at once (loaded), those of one of all a chunk of keys at a
// time, in key order, read in tx: memory stays bounded by the held keys
// and the pull's rows, not by the table.
func (ps *pullScope) entering(ctx context.Context, tx bun.IDB, t *dbsync.Table, fn func(keys []string) error) error {
	enters := func(k string) bool { return !ps.held[t.Name][k] && !ps.sent[t.Name][k] }
	if ps.all[t.Name] {
		return store.KeyPages(ctx, tx, t, ps.chunk, nil, func(page []string) error {
			return fn(slices.DeleteFunc(page, func(k string) bool { return !enters(k) }))
		})
	}
	var keys []string
	for k := range ps.in[t.Name] {
		if enters(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return fn(keys)
}

// end emits the scope lines, then the end line, which counts them: the
// rows that left the node's scope (children first), then the rows that
// entered it (parents first), read in the pull's snapshot.
func (ps *pullScope) end(ctx context.Context, tx bun.IDB, emit Emit, end *protocol.Message) error {
	if ps == nil {
		return emit(end)
	}
	for i := len(ps.tables) - 1; i >= 0; i-- {
		t := ps.tables[i]
		var out []string
		for k := range ps.held[t.Name] {
			if !ps.inScope(t.Name, k) && !ps.deleted[t.Name][k] {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		for start := 0; start < len(out); start += ps.chunk {
			keys := out[start:min(start+ps.chunk, len(out))]
			if err := emit(&protocol.Message{Type: protocol.MsgScopeOut, Table: t.Name, Keys: keys}); err != nil {
				return err
			}
			end.ScopeOutCount += int64(len(keys))
		}
	}
	lr := ps.s.newLineReader(ctx, tx, ps.wanted)
	for _, t := range ps.tables {
		// Up to a chunk of keys a line, their rows read a line at a time
		// within the line budget (lines), with the parents they need.
		var ops []protocol.Operation
		flush := func(whole bool) error {
			for len(ops) >= ps.chunk || (whole && len(ops) > 0) {
				n := min(ps.chunk, len(ops))
				if err := ps.moveIn(lr, t, ops[:n], emit, end); err != nil {
					return err
				}
				ops = ops[n:]
			}
			return nil
		}
		if err := ps.entering(ctx, tx, t, func(keys []string) error {
			for _, k := range keys {
				ops = append(ops, protocol.Operation{Table: t.Name, RowID: k, Command: models.Insert})
			}
			return flush(false)
		}); err != nil {
			return err
		}
		if err := flush(true); err != nil {
			return err
		}
	}
	return emit(end)
}

// moveIn emits the scope_in lines of ops (at most a chunk of rows of t
// entering the node's scope), counted in end.
func (ps *pullScope) moveIn(lr *lineReader, t *dbsync.Table, ops []protocol.Operation, emit Emit, end *protocol.Message) error {
	return lr.lines(ops, func(_ []protocol.Operation, b *payloadBuilder, nrows int) error {
		if nrows == 0 {
			return nil // gone from the snapshot's table
		}
		msg := &protocol.Message{Type: protocol.MsgScopeIn, Table: t.Name, Rows: b.payload[t.Name][:nrows:nrows]}
		if b.n > nrows {
			msg.Payload = b.payload
			if parents := b.payload[t.Name][nrows:]; len(parents) > 0 {
				msg.Payload[t.Name] = parents
			} else {
				delete(msg.Payload, t.Name)
			}
		}
		end.ScopeInCount += int64(nrows)
		return emit(msg)
	})
}
