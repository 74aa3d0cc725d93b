package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// Scopes declares, per tracked table, which rows a node may read and
// write: partial sync. A node belongs to the principal its registration
// was accepted with (Registration.UserID, stored in sync_nodes), and every
// later request of the node is evaluated against the rules with that
// principal, read from the node's row, never from the request. A node
// without a principal is in no table's scope but the global ones.
//
// With Config.Scopes set, every tracked table needs a rule: a table the
// application forgot would otherwise be readable and writable by all.
// Rules are data: the server compiles them to SQL (bun identifiers and
// placeholders) on both dialects; nothing of a node's request becomes SQL
// text.
type Scopes map[string]Rule

// Rule decides which rows of one table are in a node's scope. Build it
// with OwnedBy, ThroughParent, MemberOf, AnyOf, ReadOnly, Global or
// GlobalWritable; the zero Rule is invalid.
type Rule struct {
	kind ruleKind
	// column: OwnedBy's principal column, ThroughParent's foreign key.
	column string
	// table, key: MemberOf's membership table and its column referencing
	// the scoped table's key; column is then its principal column.
	table, key string
	any        []Rule
}

type ruleKind int

const (
	ruleNone ruleKind = iota
	ruleOwned
	ruleParent
	ruleMember
	ruleAny
	ruleGlobal
	ruleGlobalWritable
	ruleReadOnly
)

// OwnedBy puts in scope the rows whose column equals the node's principal
// (e.g. todos.owner_id = the user).
func OwnedBy(column string) Rule { return Rule{kind: ruleOwned, column: column} }

// ThroughParent puts in scope the rows whose foreign key column references
// a row in scope of the referenced (tracked) table: the todos of the lists
// in scope.
func ThroughParent(column string) Rule { return Rule{kind: ruleParent, column: column} }

// MemberOf puts in scope the rows named by a membership table: a row is in
// scope when the membership table has a row whose keyColumn holds the
// row's primary key and whose principalColumn holds the node's principal
// (the lists a user is a member of, through list_members). The membership
// table need not be tracked.
func MemberOf(table, keyColumn, principalColumn string) Rule {
	return Rule{kind: ruleMember, table: table, key: keyColumn, column: principalColumn}
}

// AnyOf puts in scope the rows any of the rules puts in scope (the lists a
// user owns or is a member of).
func AnyOf(rules ...Rule) Rule { return Rule{kind: ruleAny, any: rules} }

// ReadOnly puts the rows rule puts in scope in scope for reading only: a
// node may read them (and their children through ThroughParent), not
// write them, unless another rule of an AnyOf grants it. The lists a user
// may see as a viewer, not edit:
//
//	AnyOf(OwnedBy("owner_id"), MemberOf("list_editors", "list_id", "user_id"),
//		ReadOnly(MemberOf("list_viewers", "list_id", "user_id")))
func ReadOnly(rule Rule) Rule { return Rule{kind: ruleReadOnly, any: []Rule{rule}} }

// Global puts every row in every node's scope for reading; no node may
// write the table (a push touching it is refused), nor the rows of tables
// in scope through it (ThroughParent), as with ReadOnly.
func Global() Rule { return Rule{kind: ruleGlobal} }

// GlobalWritable puts every row in every node's scope, for reading and
// writing: the table behaves as without scopes. A row of it that
// references a row of a scoped table makes that row readable by every
// node (a readable row brings the parents it needs); a push may set such
// a reference only to a row the node reads by that table's own rule.
func GlobalWritable() Rule { return Rule{kind: ruleGlobalWritable} }

// ErrScopeConfig is returned by New for Config.Scopes that do not fit the
// tracked tables.
var ErrScopeConfig = errors.New("server: invalid Config.Scopes")

// scoper evaluates the rules of Config.Scopes; nil when scopes are off.
type scoper struct {
	reg   *dbsync.Registry
	rules map[string]Rule
	// cycles maps each table on a cycle of foreign keys between pulled,
	// scoped tables to the tables of its cycle (registry order): the
	// rows readable as parents have no fixed depth there (readCond).
	cycles map[string][]*dbsync.Table
}

// newScoper checks the rules against the registry: a rule for every
// tracked table and only for them, columns that exist, foreign keys that
// reference tracked tables, no cycle through ThroughParent.
func newScoper(ctx context.Context, db bun.IDB, reg *dbsync.Registry, sc Scopes) (*scoper, error) {
	if sc == nil {
		return nil, nil
	}
	s := &scoper{reg: reg, rules: map[string]Rule(sc)}
	var names []string
	for name := range sc {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if reg.Table(name) == nil {
			return nil, fmt.Errorf("%w: %q is not a tracked table", ErrScopeConfig, name)
		}
	}
	for _, t := range reg.Tables() {
		r, ok := sc[t.Name]
		if !ok {
			return nil, fmt.Errorf("%w: table %s has no rule (declare it Global or GlobalWritable if every node sees it)", ErrScopeConfig, t.Name)
		}
		if err := s.check(ctx, db, t, r, true, map[string]bool{t.Name: true}); err != nil {
			return nil, err
		}
	}
	s.cycles = s.findCycles()
	return s, nil
}

func (s *scoper) check(ctx context.Context, db bun.IDB, t *dbsync.Table, r Rule, top bool, path map[string]bool) error {
	switch r.kind {
	case ruleGlobal, ruleGlobalWritable:
		if !top {
			return fmt.Errorf("%w: %s: Global inside AnyOf", ErrScopeConfig, t.Name)
		}
	case ruleOwned:
		if t.Column(r.column) == nil {
			return fmt.Errorf("%w: %s: OwnedBy: no column %q", ErrScopeConfig, t.Name, r.column)
		}
	case ruleParent:
		parent := s.parentOf(t, r.column)
		if parent == nil {
			return fmt.Errorf("%w: %s: ThroughParent: %q is not a foreign key to a tracked table", ErrScopeConfig, t.Name, r.column)
		}
		if path[parent.Name] {
			return fmt.Errorf("%w: %s: ThroughParent %s makes a cycle", ErrScopeConfig, t.Name, r.column)
		}
		path[parent.Name] = true
		defer delete(path, parent.Name)
		pr, ok := s.rules[parent.Name]
		if !ok {
			return nil // reported for the parent itself
		}
		return s.check(ctx, db, parent, pr, true, path)
	case ruleMember:
		cols, err := tableColumns(ctx, db, r.table)
		if err != nil {
			return err
		}
		if cols == nil {
			return fmt.Errorf("%w: %s: MemberOf: no table %q", ErrScopeConfig, t.Name, r.table)
		}
		for _, c := range []string{r.key, r.column} {
			if !cols[c] {
				return fmt.Errorf("%w: %s: MemberOf: no column %s.%s", ErrScopeConfig, t.Name, r.table, c)
			}
		}
	case ruleReadOnly:
		return s.check(ctx, db, t, r.any[0], false, path)
	case ruleAny:
		if len(r.any) == 0 {
			return fmt.Errorf("%w: %s: AnyOf without rules", ErrScopeConfig, t.Name)
		}
		for _, sub := range r.any {
			if err := s.check(ctx, db, t, sub, false, path); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: %s: zero Rule", ErrScopeConfig, t.Name)
	}
	return nil
}

// tableColumns reads a table's column names from the catalog (nil when
// there is no such table): a membership table need not be tracked.
func tableColumns(ctx context.Context, db bun.IDB, table string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM ? WHERE 1 = 0", bun.Ident(table))
	if err != nil {
		return nil, nil //nolint:nilerr // no such table: reported by the caller
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// parentOf returns the tracked table column references, or nil. The
// foreign keys are the server's: t may be a table of an older node's view
// (Server.ForSchema), which lacks those of the columns it does not know.
func (s *scoper) parentOf(t *dbsync.Table, column string) *dbsync.Table {
	for _, fk := range s.reg.Table(t.Name).ForeignKeys {
		if fk.Column == column {
			return s.reg.Table(fk.RefTable)
		}
	}
	return nil
}

// ownerColumns lists the OwnedBy columns of a table's rule (in AnyOf
// too): a node may change them only on rows it owns by them.
func (s *scoper) ownerColumns(t *dbsync.Table) []string {
	var out []string
	var walk func(r Rule)
	walk = func(r Rule) {
		switch r.kind {
		case ruleOwned:
			out = append(out, r.column)
		case ruleAny:
			for _, sub := range r.any {
				walk(sub)
			}
		}
	}
	walk(s.rules[t.Name])
	return out
}

// openingRefs returns the foreign keys through which a row of t makes
// the row it references readable (readCond: a node reads the parents its
// rows need), or, in a push-only table, holds it on the server: those to
// a scoped table, but t's ThroughParent column (its parent is in scope
// already). A push may point them only at rows the node reads by their
// own rule, or leave them as they were (scopeGuard.newRefs): else a row
// of its own would open any parent, or keep its owner from deleting it
// (the delete refused, the referencing row being out of the owner's
// scope). The foreign keys are the server's, as parentOf's: a view
// (Server.ForSchema) of a node that announces a schema without the parent
// table lacks the foreign key, not the column, which its pushes set.
func (s *scoper) openingRefs(t *dbsync.Table) []protocol.ForeignKey {
	if full := s.reg.Table(t.Name); full != nil {
		t = full
	}
	var out []protocol.ForeignKey
	for _, fk := range t.ForeignKeys {
		if p := s.reg.Table(fk.RefTable); p == nil || s.global(p) {
			continue
		}
		if r := s.rules[t.Name]; r.kind == ruleParent && r.column == fk.Column {
			continue
		}
		out = append(out, fk)
	}
	return out
}

// global reports whether every row of the table is in every scope.
func (s *scoper) global(t *dbsync.Table) bool {
	if s == nil {
		return true
	}
	k := s.rules[t.Name].kind
	return k == ruleGlobal || k == ruleGlobalWritable
}

// writable reports whether nodes may write rows of the table at all.
func (s *scoper) writable(t *dbsync.Table) bool {
	return s == nil || s.rules[t.Name].kind != ruleGlobal
}

// where returns the condition that a row of t, qualified by qual (its
// table name or alias in the enclosing query), is in the scope of
// principal for writing. A nil principal matches no row of a scoped
// table.
func (s *scoper) where(t *dbsync.Table, qual schema.QueryAppender, principal *string) schema.QueryAppender {
	return s.cond(t, s.rules[t.Name], qual, &scopeEnv{principal: principal, write: true}, 0)
}

// scopeEnv is what a condition is evaluated with.
type scopeEnv struct {
	principal *string
	// write evaluates the scope for writing: ReadOnly rules match no row.
	write bool
	// ignore lists, per membership table, keys of rows MemberOf does not
	// count (the rows a push writes: a node cannot grant itself access).
	ignore map[string][]any
	// staged, for the commit of a chunked push, ignores the rows of
	// membership tables it writes, read from its staged keys.
	staged *stagedPush
	// granted lists, per MemberOf rule (grantKey), the membership rows
	// the push writes that gave the principal access before it: their
	// key and key column as text. Those still the same count: a node may
	// edit its own membership (a setting on it) and keep what it had.
	granted map[string][][2]string
}

// grantKey names a MemberOf rule's rows in scopeEnv.granted.
func grantKey(r Rule) string { return r.table + "\x00" + r.key + "\x00" + r.column }

// memberRules lists the MemberOf rules (in AnyOf and ReadOnly too) whose
// membership table is table.
func (s *scoper) memberRules(table string) []Rule {
	var out []Rule
	for _, g := range s.grantsOf(table) {
		if !slices.ContainsFunc(out, func(o Rule) bool { return grantKey(o) == grantKey(g.rule) }) {
			out = append(out, g.rule)
		}
	}
	return out
}

// grant is a MemberOf rule of a scoped table: the access a row of its
// membership table gives (write: the rule is not under ReadOnly).
type grant struct {
	table *dbsync.Table // the scoped table
	rule  Rule
	write bool
}

// grantsOf lists the MemberOf rules whose membership table is table, with
// the scoped table each gives access to; a rule found under ReadOnly and
// outside it gives write access.
func (s *scoper) grantsOf(table string) []grant {
	var out []grant
	for _, name := range slices.Sorted(maps.Keys(s.rules)) {
		var walk func(r Rule, write bool)
		walk = func(r Rule, write bool) {
			switch r.kind {
			case ruleMember:
				if r.table != table {
					return
				}
				for i := range out {
					if out[i].table.Name == name && grantKey(out[i].rule) == grantKey(r) {
						out[i].write = out[i].write || write
						return
					}
				}
				out = append(out, grant{table: s.reg.Table(name), rule: r, write: write})
			case ruleReadOnly:
				walk(r.any[0], false)
			case ruleAny:
				for _, sub := range r.any {
					walk(sub, write)
				}
			}
		}
		walk(s.rules[name], true)
	}
	return out
}

// ungranted returns the keys among keys, rows of the membership table m a
// push wrote (read after its writes), that name a row the node does not
// hold, without the memberships the push writes (env: ignore or staged,
// and granted), at the access the row gives: a node may share what it
// holds, not grant itself or anyone access it has not (a viewer making
// itself an editor through a membership row of its own, a membership of
// a row that does not exist yet).
func (s *scoper) ungranted(ctx context.Context, db bun.IDB, m *dbsync.Table, keys map[string]bool, env *scopeEnv) ([]string, error) {
	var out []string
	for _, g := range s.grantsOf(m.Name) {
		vals, err := columnValues(ctx, db, m, g.rule.key, keys)
		if err != nil {
			return nil, err
		}
		byRow := map[string][]string{} // membership keys by the row they name
		for k, v := range vals {
			if v == nil {
				continue
			}
			ck, err := g.table.CanonicalKey(*v)
			if err != nil {
				out = append(out, k) // names no row
				continue
			}
			byRow[ck] = append(byRow[ck], k)
		}
		if len(byRow) == 0 {
			continue
		}
		e := *env
		e.write = g.write
		in, err := store.ExistingWhere(ctx, db, g.table, slices.Collect(maps.Keys(byRow)),
			s.cond(g.table, s.rules[g.table.Name], g.table.Schema().SQLName, &e, 0))
		if err != nil {
			return nil, err
		}
		for row, ks := range byRow {
			if !in[row] {
				out = append(out, ks...)
			}
		}
	}
	return out, nil
}

// readGrants adds to into, for each MemberOf rule on t, the rows among
// keys that give principal access now (before the push's writes).
func (s *scoper) readGrants(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, principal *string, into map[string][][2]string) error {
	rules := s.memberRules(t.Name)
	if len(rules) == 0 || principal == nil || len(keys) == 0 {
		return nil
	}
	list, err := store.KeyArgs(t, keys)
	if err != nil {
		return err
	}
	for _, r := range rules {
		for part := range slices.Chunk(list, store.Batch) {
			rows, err := db.QueryContext(ctx, "SELECT CAST(? AS TEXT), CAST(? AS TEXT) FROM ? WHERE ? IN (?) AND ? = ? AND ? IS NOT NULL",
				bun.Ident(t.PK.Name), bun.Ident(r.key), bun.Ident(t.Name), bun.Ident(t.PK.Name),
				bun.List(part), bun.Ident(r.column), *principal, bun.Ident(r.key))
			if err != nil {
				return fmt.Errorf("read memberships in %s: %w", t.Name, err)
			}
			for rows.Next() {
				var g [2]string
				if err := rows.Scan(&g[0], &g[1]); err != nil {
					rows.Close()
					return fmt.Errorf("read memberships in %s: %w", t.Name, err)
				}
				into[grantKey(r)] = append(into[grantKey(r)], g)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read memberships in %s: %w", t.Name, err)
			}
		}
	}
	return nil
}

func (s *scoper) cond(t *dbsync.Table, r Rule, qual schema.QueryAppender, env *scopeEnv, depth int) schema.QueryAppender {
	var p any
	if env.principal != nil {
		p = *env.principal
	}
	switch r.kind {
	case ruleOwned:
		return bun.SafeQuery("?.? = ?", qual, bun.Ident(r.column), p)
	case ruleParent:
		parent := s.parentOf(t, r.column)
		alias := bun.Ident("dbsync_scope" + strconv.Itoa(depth))
		inner := s.cond(parent, s.rules[parent.Name], alias, env, depth+1)
		return bun.SafeQuery("?.? IN (SELECT ?.? FROM ? AS ? WHERE ?)",
			qual, bun.Ident(r.column), alias, bun.Ident(parent.PK.Name), bun.Ident(parent.Name), alias, inner)
	case ruleMember:
		alias := bun.Ident("dbsync_scope" + strconv.Itoa(depth))
		q := bun.SafeQuery("EXISTS (SELECT 1 FROM ? AS ? WHERE ?.? = ?.? AND ?.? = ?)",
			bun.Ident(r.table), alias, alias, bun.Ident(r.key), qual, bun.Ident(t.PK.Name), alias, bun.Ident(r.column), p)
		mt := s.reg.Table(r.table)
		// A row the push writes counts as it was (granted), else not.
		kept := bun.SafeQuery("1 = 0")
		if g := env.granted[grantKey(r)]; len(g) > 0 && mt != nil {
			vals := make([]string, len(g))
			args := []any{alias, bun.Ident(mt.PK.Name), alias, bun.Ident(r.key)}
			for i, v := range g {
				vals[i] = "(?, ?)"
				args = append(args, v[0], v[1])
			}
			kept = bun.SafeQuery("(CAST(?.? AS TEXT), CAST(?.? AS TEXT)) IN (VALUES "+strings.Join(vals, ", ")+")", args...)
		}
		switch keys := env.ignore[r.table]; {
		case len(keys) > 0:
			q = bun.SafeQuery("EXISTS (SELECT 1 FROM ? AS ? WHERE ?.? = ?.? AND ?.? = ? AND (?.? NOT IN (?) OR ?))",
				bun.Ident(r.table), alias, alias, bun.Ident(r.key), qual, bun.Ident(t.PK.Name), alias, bun.Ident(r.column), p,
				alias, bun.Ident(mt.PK.Name), bun.List(keys), kept)
		case env.staged != nil && mt != nil:
			// Staged keys are canonical text (checkPush), as the cast
			// gives them.
			pk := env.staged
			q = bun.SafeQuery("EXISTS (SELECT 1 FROM ? AS ? WHERE ?.? = ?.? AND ?.? = ? AND (CAST(?.? AS TEXT) NOT IN "+
				"(SELECT row_id FROM sync_push_keys WHERE node_id = ? AND push_id = ? AND seq < ? AND tbl = ? AND command <> ?) OR ?))",
				bun.Ident(r.table), alias, alias, bun.Ident(r.key), qual, bun.Ident(t.PK.Name), alias, bun.Ident(r.column), p,
				alias, bun.Ident(mt.PK.Name), pk.node, pk.pushID, len(pk.digests), mt.Name, string(models.Delete), kept)
		}
		return q
	case ruleReadOnly:
		if env.write {
			return bun.SafeQuery("1 = 0")
		}
		return s.cond(t, r.any[0], qual, env, depth+1)
	case ruleGlobal:
		// No node writes it, nor (through ThroughParent) its children.
		if env.write {
			return bun.SafeQuery("1 = 0")
		}
	case ruleAny:
		parts := make([]string, len(r.any))
		args := make([]any, len(r.any))
		for i, sub := range r.any {
			parts[i] = "(?)"
			args[i] = s.cond(t, sub, qual, env, depth+1)
		}
		return bun.SafeQuery("("+strings.Join(parts, " OR ")+")", args...)
	}
	return bun.SafeQuery("1 = 1")
}

// principal reads the principal of a node: the user id its registration
// was accepted with (nil when there is none, or when the node is unknown).
func (s *Server) principal(ctx context.Context, db bun.IDB, node int64) (*string, error) {
	var n models.Node
	err := db.NewSelect().Model(&n).Column("registry_user_id").Where("node_id = ?", node).Scan(ctx)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load node principal: %w", err)
	}
	return n.RegistryUserID, nil
}
