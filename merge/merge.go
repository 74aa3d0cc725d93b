// Package merge resolves what a pull brings against a node's unpushed
// changes: python-sync-db's merge, with its recorded bugs fixed, and
// pluggable policies for same-row conflicts. The rules are in merge.md at
// the root of the module; each has an ID used by its tests.
//
// The package is pure: it reads nothing and writes nothing, and it imports
// no database, bun or HTTP package (only package protocol). The caller
// (package client) describes the node's pending operations ([Local]),
// answers questions about local rows through a [Lookup], and applies the
// [Plan] each pull chunk yields, and the one [Merger.Finish] yields at the
// end, in one transaction with foreign key checks deferred.
package merge

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/go-dbsync/dbsync/protocol"
)

// Obj names one row.
type Obj struct {
	Table string
	Key   string
}

func (o Obj) String() string { return o.Table + "/" + o.Key }

// LocalOp is the node's pending change to one row after compression:
// its effective command and the log entries (orders) behind it.
type LocalOp struct {
	Obj
	Command protocol.Command
	Orders  []int64
	// Recreated marks an insert the merge logged to re-create a row the
	// server had (M5, D1): its key is the server's, so K1 never moves it.
	// Such inserts are logged at the head of the log (NewOp.Head); the
	// caller sets Recreated for them when it describes its log again.
	Recreated bool
}

// Ref says that a node's pending row Child references Parent through a
// foreign key.
type Ref struct {
	Child, Parent Obj
}

// Lookup answers questions about the node's current rows.
type Lookup interface {
	// Rows returns the rows of table with the given keys; missing keys
	// are absent from the result.
	Rows(table string, keys []string) (map[string]protocol.Row, error)
	// UniqueHolders returns, for each row (by index), the key of a local
	// row whose columns cols hold the same values, if any.
	UniqueHolders(table string, cols []string, rows []protocol.Row) (map[int]string, error)
}

// Local is the node's side of a merge. It changes as chunks are merged.
type Local struct {
	ops      map[Obj]*LocalOp
	children map[Obj]map[Obj]bool // parent → pending children referencing it
	parents  map[Obj][]Obj        // pending child → its parents
	minOrder int64
	// displaced rows were parked to make room for a unique value; a later
	// chunk must rewrite or delete them (U3). Each maps to the columns of
	// the unique constraint whose value it gave up.
	displaced map[Obj][]string
	// freed is set when a row lost its last pending dependent (dropRefs):
	// a delete D1 held may be free to apply.
	freed bool
	// tables counts the pending operations by table (set, unset).
	tables map[string]int
}

// set records op as the node's pending operation on its row.
func (l *Local) set(op *LocalOp) {
	if l.ops[op.Obj] == nil {
		l.tables[op.Table]++
	}
	l.ops[op.Obj] = op
}

// unset forgets the node's pending operation on o.
func (l *Local) unset(o Obj) {
	if l.ops[o] != nil {
		l.tables[o.Table]--
	}
	delete(l.ops, o)
}

// NewLocal describes the node's pending operations (one per row) and the
// references of its pending inserted and updated rows.
func NewLocal(ops []LocalOp, refs []Ref) *Local {
	l := &Local{ops: map[Obj]*LocalOp{}, children: map[Obj]map[Obj]bool{}, parents: map[Obj][]Obj{}, displaced: map[Obj][]string{}, tables: map[string]int{}}
	for i := range ops {
		op := ops[i]
		l.set(&op)
		for _, o := range op.Orders {
			if l.minOrder == 0 || o < l.minOrder {
				l.minOrder = o
			}
		}
	}
	for _, r := range refs {
		l.addRef(r.Child, r.Parent)
	}
	return l
}

func (l *Local) addRef(child, parent Obj) {
	if l.children[parent] == nil {
		l.children[parent] = map[Obj]bool{}
	}
	l.children[parent][child] = true
	l.parents[child] = append(l.parents[child], parent)
}

func (l *Local) dropRefs(child Obj) {
	for _, p := range l.parents[child] {
		delete(l.children[p], child)
		if len(l.children[p]) == 0 {
			delete(l.children, p)
			l.freed = true
		}
	}
	delete(l.parents, child)
}

// Op returns the pending operation on a row, or nil.
func (l *Local) Op(o Obj) *LocalOp { return l.ops[o] }

// Len returns the number of rows with pending operations.
func (l *Local) Len() int { return len(l.ops) }

// Objs returns the rows with pending operations, by table and key.
func (l *Local) Objs() []Obj {
	out := make([]Obj, 0, len(l.ops))
	for o := range l.ops {
		out = append(out, o)
	}
	sortObjs(out)
	return out
}

// Rekey moves a pending row to another key (K1) and updates the references
// that pointed at it. References to a row under to (merge.md K2: the
// node's rows referencing it under that spelling) are kept with them.
func (l *Local) Rekey(from Obj, to string) {
	dst := Obj{Table: from.Table, Key: to}
	if op := l.ops[from]; op != nil {
		l.unset(from)
		op.Obj = dst
		l.set(op)
	}
	if ps := l.parents[from]; ps != nil {
		delete(l.parents, from)
		l.parents[dst] = append(l.parents[dst], ps...)
		for _, p := range ps {
			delete(l.children[p], from)
			l.children[p][dst] = true
		}
	}
	if cs := l.children[from]; cs != nil {
		delete(l.children, from)
		if l.children[dst] == nil {
			l.children[dst] = map[Obj]bool{}
		}
		for c := range cs {
			l.children[dst][c] = true
		}
		for c := range cs {
			for i, p := range l.parents[c] {
				if p == from {
					l.parents[c][i] = dst
				}
			}
		}
	}
}

// Move is a renumbering of a node's unpushed row to a fresh integer key.
type Move struct {
	Table    string
	From, To int64
}

// Renumber implements K1: before merging a pull, every pending insert in a
// table with integer keys whose key the server may already use (at most
// serverMax[table]) moves to a fresh key above both the server's and the
// node's greatest key (localMax). The moves are in table, then key order;
// Local is updated. The caller moves the rows and the references to them.
//
// Re-creations (LocalOp.Recreated) never move: their key is the row's key
// on the server, and another node may re-create the same row under it.
// Moving one would make two rows of one.
func Renumber(reg protocol.Schema, l *Local, serverMax, localMax map[string]int64) ([]Move, error) {
	var objs []Obj
	for o, op := range l.ops {
		if op.Command != protocol.Insert || op.Recreated {
			continue
		}
		t := reg.TableSchema(o.Table)
		if t == nil || t.KeyKind != protocol.KeyInt {
			continue
		}
		objs = append(objs, o)
	}
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].Table != objs[j].Table {
			return objs[i].Table < objs[j].Table
		}
		return keyLess(objs[i].Key, objs[j].Key)
	})
	next := map[string]int64{}
	var moves []Move
	for _, o := range objs {
		var k int64
		if _, err := fmt.Sscan(o.Key, &k); err != nil {
			return nil, fmt.Errorf("merge: pending insert %s has a non-integer key", o)
		}
		if k > serverMax[o.Table] {
			continue
		}
		if _, ok := next[o.Table]; !ok {
			next[o.Table] = max(serverMax[o.Table], localMax[o.Table]) + 1
		}
		to := next[o.Table]
		next[o.Table]++
		moves = append(moves, Move{Table: o.Table, From: k, To: to})
		l.Rekey(o, fmt.Sprint(to))
	}
	return moves, nil
}

func keyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// Write is a row the plan writes (insert or replace).
type Write struct {
	Obj
	Row protocol.Row
}

// NewOp is a log entry the plan adds. Head entries go before every
// existing entry: they are the inserts that re-create a row the server had
// (D1, M5), which the caller must describe as LocalOp.Recreated later.
type NewOp struct {
	Obj
	Command protocol.Command
	Head    bool
}

// Respell gives the node's row Obj the key To, another spelling of its
// key that the node's database takes for the same row (merge.md K2).
type Respell struct {
	Obj
	To string
	// References is set when the node's rows referencing it follow:
	// the row had a pending change (its pending rows reference it under
	// its spelling). A row the server respelled (its delete and a write
	// under the new spelling in one chunk) keeps its references as the
	// server's rows do.
	References bool
}

// Plan is what one chunk (or the end of a pull: Merger.Finish) changes
// locally, applied in this order: Respells, Deletes
// (children first), Parks, Writes (parents first), then the log edits. A
// delete of a row that rows still reference (a child the plan or a later
// one moves away) may wait for the writes (merge.md A3).
type Plan struct {
	// Respells are the node's rows with pending changes that take the
	// spelling of their key a remote operation names (K2), in order (a
	// row may be respelled twice): the caller changes the row's key, the
	// references to it and its pending log entries, without logging.
	// The rest of the plan names the rows by their new keys.
	Respells []Respell
	Deletes  []Obj
	// Parks are rows that hold unique values the chunk's writes take (U2,
	// U3): the caller moves each out of the way in place, giving its unique
	// columns placeholder values no row holds or takes, and never deletes
	// it (its children must not see an ON DELETE action). Each is rewritten
	// by this chunk (U2) or must be rewritten or deleted by a later one,
	// or by Finish's plan (U3, checked by Finish).
	Parks  []Obj
	Writes []Write
	// DropOrders are log entries to delete; AddOps entries to add.
	DropOrders []int64
	AddOps     []NewOp
	// Conflicts lists what was resolved, for logs and metrics.
	Conflicts []Resolved
}

// Resolved is one conflict and how it ended.
type Resolved struct {
	Kind       string
	Obj        Obj
	Resolution Resolution
}

// Merger merges the chunks of one pull (Chunk, Restore); Finish ends it.
type Merger struct {
	reg    protocol.Schema
	local  *Local
	lookup Lookup
	policy func(table string) Policy
	// held are the remote deletes D1 has not decided yet, in the order
	// they came: rows the node's pending rows depended on at the end of
	// every chunk so far. A later chunk may drop those pending rows (a
	// policy taking the server's side), so D1 decides at the end of the
	// pull (Finish). Only D1-blocked deletes wait: few, however large the
	// pull.
	held   []protocol.Operation
	isHeld map[Obj]bool
	// pushes reports whether the node pushes a table (nil: every table);
	// refused are the remote deletes D1 may not keep for that reason
	// (rows of tables the node does not push), which Finish refuses.
	pushes  func(table string) bool
	refused []Obj
	// pending are the rows with pending changes when the merge began:
	// the refusal names those only, not the re-creations D1 logged in
	// this pull (which the refusal rolls back).
	pending map[Obj]bool
	// spellings finds the node's rows under other spellings of text keys
	// (K2; nil: the node compares keys byte for byte).
	spellings func(table string, keys []string) (map[string]string, error)
}

// Option tunes a Merger (NewMerger).
type Option func(*Merger)

// Pushes tells the merger which tables the node pushes (pushes(table)
// reports whether it does; by default, every table). D1 keeps a row the
// server deleted only when the node pushes its table, the next push
// re-creating it; the delete of a row of another table (a pull-only
// table: dbsync.PullOnly) that the node's pending rows depend on refuses
// the pull: Finish returns a *PendingDependentsError (merge.md D1).
func Pushes(pushes func(table string) bool) Option {
	return func(m *Merger) { m.pushes = pushes }
}

// Spellings tells the merger how the node's database compares text keys
// (merge.md K2). spellings returns, for keys of table, the key of the
// row the node's database holds under another spelling of each (a text
// key whose collation ignores case, SQLite's NOCASE, citext or a
// nondeterministic ICU collation on PostgreSQL: "ABC" names the row
// "abc"), by key; a key that names no row, or names it as spelled, is
// absent. The merger asks, for each chunk, about the keys of its remote
// operations that name no pending row of the node (or a pending delete)
// in the tables with text keys where the node has pending changes, and
// about the keys the chunk writes in those it deletes rows of. By
// default keys are compared byte for byte.
func Spellings(spellings func(table string, keys []string) (map[string]string, error)) Option {
	return func(m *Merger) { m.spellings = spellings }
}

// NewMerger returns a merger. reg describes the tracked tables (a
// *dbsync.Registry); policy returns the policy of a table; nil means
// Default everywhere.
func NewMerger(reg protocol.Schema, local *Local, lookup Lookup, policy func(table string) Policy, opts ...Option) *Merger {
	if policy == nil {
		policy = func(string) Policy { return Default }
	}
	m := &Merger{reg: reg, local: local, lookup: lookup, policy: policy, isHeld: map[Obj]bool{}, pending: map[Obj]bool{}}
	for _, opt := range opts {
		opt(m)
	}
	for o := range local.ops {
		m.pending[o] = true
	}
	return m
}

// keeps reports whether D1 may keep a row of table: the next push
// re-creates it only if the node pushes the table.
func (m *Merger) keeps(table string) bool {
	return m.pushes == nil || m.pushes(table)
}

// PendingDependentsError is Finish's refusal of a pull (merge.md D1): the
// server deleted rows (Deleted) of tables the node does not push, which
// the node's rows with pending inserts or updates (Pending) reference,
// directly or up a chain of references. D1 cannot keep those rows (no
// push re-creates them), and applying the deletes would leave the pending
// rows referencing nothing: nothing of the pull must be applied. The
// application re-points the pending rows to other rows, or gives their
// changes up, and pulls again. Deleted is sorted by table and key;
// Pending lists the rows farthest down the chains first (children first).
type PendingDependentsError struct {
	Deleted []Obj
	Pending []Obj
}

func (e *PendingDependentsError) Error() string {
	return fmt.Sprintf("merge: the server deleted %v, of tables the node does not push, which the node's pending rows %v depend on", e.Deleted, e.Pending)
}

// ErrInconsistent is returned when a pull leaves the node in a state the
// server could not have: a row displaced (parked) for a unique value that
// no later operation rewrote or deleted. The pull must be rolled back.
var ErrInconsistent = errors.New("merge: pull is inconsistent with the local database")

// Finish ends a pull, after its last chunk: it decides the remote deletes
// D1 held back (a delete no pending row depends on any more follows M2 or
// M5, the others D1 keeps) and returns their plan, to apply as a chunk's,
// then checks U3 (ErrInconsistent: nothing must be applied then). The
// plan may be empty, never nil.
func (m *Merger) Finish() (*Plan, error) {
	p := newPlanner(m, nil)
	if err := m.settle(p, true); err != nil {
		return nil, err
	}
	if len(m.refused) > 0 {
		return nil, m.dependents()
	}
	if err := m.uniques(p); err != nil {
		return nil, err
	}
	if len(m.local.displaced) == 0 {
		return p.plan, nil
	}
	var names []string
	for o := range m.local.displaced {
		names = append(names, o.String())
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%w: rows %v hold unique values the server gave to other rows, and the server did not change them", ErrInconsistent, names)
}

// settle decides the held deletes no pending row depends on any more
// (M2, M5), until none is: one deleted frees its own parents (M2 drops
// its references). At the end of the pull (last), D1 keeps the others;
// before, they stay held.
//
// A held delete was depended on when held, and stays so until a row
// loses its last pending dependent (Local.freed): only then are they
// looked at again, so that a pull in many chunks does not go through
// them at every chunk.
func (m *Merger) settle(p *planner, last bool) error {
	for (last || m.local.freed) && len(m.held) > 0 {
		m.local.freed = false
		var kept []protocol.Operation
		for _, r := range m.held {
			o := Obj{Table: r.Table, Key: r.RowID}
			if m.dependedOn(o) {
				kept = append(kept, r)
				continue
			}
			delete(m.isHeld, o)
			if err := m.one(p, m.reg.TableSchema(r.Table), r); err != nil {
				return err
			}
		}
		if len(kept) == len(m.held) {
			break // none freed
		}
		m.held = kept
	}
	m.local.freed = false
	if !last {
		return nil
	}
	held := m.held
	m.held, m.isHeld = nil, map[Obj]bool{}
	for _, r := range held {
		if err := m.one(p, m.reg.TableSchema(r.Table), r); err != nil {
			return err
		}
	}
	return nil
}

// release decides now the held delete of o, if any: a later operation
// on o came (the server re-created the row), which must meet the row as
// that delete left it. A row D1 may not keep (its table is not pushed)
// stays as it is, unlogged: the later operation writes it.
func (m *Merger) release(p *planner, o Obj) error {
	if !m.isHeld[o] {
		return nil
	}
	delete(m.isHeld, o)
	for i, r := range m.held {
		if r.Table == o.Table && r.RowID == o.Key {
			m.held = append(m.held[:i:i], m.held[i+1:]...)
			if m.dependedOn(o) && !m.keeps(o.Table) {
				return nil
			}
			return m.one(p, m.reg.TableSchema(r.Table), r)
		}
	}
	return nil
}

// dependents builds Finish's refusal: the refused deletes, and the rows
// with pending inserts or updates below them, down every chain of
// references (Local.children), that had pending changes before the
// merge (a row D1 re-created in this pull had none: rolled back, it has
// none again).
func (m *Merger) dependents() error {
	e := &PendingDependentsError{Deleted: m.refused}
	seen := map[Obj]bool{}
	var levels [][]Obj // the pending rows, by distance from the deleted rows
	for level := slices.Clone(m.refused); len(level) > 0; {
		var next, pending []Obj
		for _, o := range level {
			for c := range m.local.children[o] {
				if seen[c] {
					continue
				}
				seen[c] = true
				if op := m.local.ops[c]; op != nil && op.Command != protocol.Delete && m.pending[c] {
					pending = append(pending, c)
				}
				next = append(next, c)
			}
		}
		sortObjs(pending)
		levels = append(levels, pending)
		level = next
	}
	// Children first, as a ScopeError names rows: given up in that order
	// (DiscardPending), a row goes before the row it references.
	for i := len(levels) - 1; i >= 0; i-- {
		e.Pending = append(e.Pending, levels[i]...)
	}
	sortObjs(e.Deleted)
	return e
}

func sortObjs(objs []Obj) {
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].Table != objs[j].Table {
			return objs[i].Table < objs[j].Table
		}
		return keyLess(objs[i].Key, objs[j].Key)
	})
}

// plan accumulates one chunk's plan.
type planner struct {
	m       *Merger
	plan    *Plan
	writes  map[Obj]int // index in plan.Writes
	deletes map[Obj]bool
	parks   map[Obj]bool
	payload map[string]map[string]protocol.Row
	// spelled holds, for the remote operations' rows the node holds
	// under another spelling (K2), that spelling; respelled the rows of
	// the node this chunk respelled, by their former key.
	spelled   map[Obj]string
	respelled map[Obj]Obj
}

func newPlanner(m *Merger, payload map[string]map[string]protocol.Row) *planner {
	return &planner{m: m, plan: &Plan{}, writes: map[Obj]int{}, deletes: map[Obj]bool{}, parks: map[Obj]bool{}, payload: payload,
		spelled: map[Obj]string{}, respelled: map[Obj]Obj{}}
}

func (p *planner) write(o Obj, row protocol.Row) {
	if i, ok := p.writes[o]; ok {
		p.plan.Writes[i].Row = row
		return
	}
	p.writes[o] = len(p.plan.Writes)
	p.plan.Writes = append(p.plan.Writes, Write{Obj: o, Row: row})
	delete(p.m.local.displaced, o)
}

func (p *planner) del(o Obj) {
	if !p.deletes[o] {
		p.deletes[o] = true
		p.plan.Deletes = append(p.plan.Deletes, o)
	}
	delete(p.m.local.displaced, o)
}

// drop removes the node's pending operation on o.
func (p *planner) drop(o Obj) {
	op := p.m.local.ops[o]
	if op == nil {
		return
	}
	p.plan.DropOrders = append(p.plan.DropOrders, op.Orders...)
	p.m.local.unset(o)
	p.m.local.dropRefs(o)
}

// replace sets the node's pending operation on o to cmd. With a row (use
// row), o's references are those of the row; without, the local row stays
// as it is and so do its references: a row kept by M5 or D1 still holds
// its parents (D1 must see them when the parent's delete comes later).
func (p *planner) replace(o Obj, cmd protocol.Command, head bool, row protocol.Row) {
	parents := p.m.local.parents[o]
	p.drop(o)
	p.plan.AddOps = append(p.plan.AddOps, NewOp{Obj: o, Command: cmd, Head: head})
	p.m.local.set(&LocalOp{Obj: o, Command: cmd, Recreated: head && cmd == protocol.Insert})
	if row != nil {
		p.refsFromRow(o, row)
		return
	}
	for _, parent := range parents {
		p.m.local.addRef(o, parent)
	}
}

func (p *planner) refsFromRow(o Obj, row protocol.Row) {
	t := p.m.reg.TableSchema(o.Table)
	for _, fk := range t.ForeignKeys {
		if k, ok := protocol.Key(row[fk.Column]); ok {
			p.m.local.addRef(o, Obj{Table: fk.RefTable, Key: k})
		}
	}
}

func (p *planner) conflict(kind string, o Obj, r Resolution) {
	p.plan.Conflicts = append(p.plan.Conflicts, Resolved{Kind: kind, Obj: o, Resolution: r})
}

// Chunk merges one chunk of a pull: compressed remote operations and the
// rows they carry (payload rows by table and key). It returns the plan to
// apply, or a *protocol.UniqueConstraintError when unique values collide in
// a way only the application can settle (nothing must be applied then).
func (m *Merger) Chunk(ops []protocol.Operation, payload map[string]map[string]protocol.Row) (*Plan, error) {
	p := newPlanner(m, payload)
	if err := m.spelledKeys(p, ops); err != nil {
		return nil, err
	}
	// D1 comes last, at the end of the pull: the deletes of rows the
	// node's pending rows depend on wait (m.held) for the pull's other
	// operations, which may drop those pending rows (a policy taking the
	// server's side: a child's delete, or its move to another parent,
	// follows its parent's delete in the log, maybe in a later chunk).
	// At the end of each chunk a delete none depends on any more is
	// applied (M2, M5), which may free the row's own parents, until none
	// is; the others wait for the next chunk, and Finish lets D1 keep
	// those still depended on.
	for _, r := range ops {
		t := m.reg.TableSchema(r.Table)
		if t == nil {
			continue
		}
		o := Obj{Table: t.Name, Key: r.RowID}
		m.respell(p, o, r.Command)
		if r.Command == protocol.Delete && (m.isHeld[o] || m.dependedOn(o)) {
			if !m.isHeld[o] {
				m.isHeld[o] = true
				m.held = append(m.held, r)
			}
			continue
		}
		if err := m.release(p, o); err != nil {
			return nil, err
		}
		if err := m.one(p, t, r); err != nil {
			return nil, err
		}
	}
	if err := m.settle(p, false); err != nil {
		return nil, err
	}
	if err := m.uniques(p); err != nil {
		return nil, err
	}
	return p.plan, nil
}

// spelledKeys asks (Spellings) which rows the chunk's remote operations
// name that the node holds under another spelling of their keys (K2):
// in the tables with text keys where the node has pending changes, of
// the rows with no pending change under the remote spelling, or a
// pending delete (the node respelled the row itself: its delete and
// insert). They are recorded in p.spelled.
func (m *Merger) spelledKeys(p *planner, ops []protocol.Operation) error {
	if m.spellings == nil {
		return nil
	}
	deleting := map[string]bool{} // tables the chunk deletes rows of
	for _, r := range ops {
		if r.Command == protocol.Delete {
			deleting[r.Table] = true
		}
	}
	byTable := map[string][]string{}
	var tables []string
	for _, r := range ops {
		t := m.reg.TableSchema(r.Table)
		if t == nil || t.KeyKind != protocol.KeyText {
			continue
		}
		// The rows the node changed, and the rows the chunk may delete
		// under one spelling and write under another.
		pending := m.local.tables[t.Name] > 0
		if !pending && (!deleting[t.Name] || r.Command == protocol.Delete) {
			continue
		}
		if l := m.local.ops[Obj{Table: t.Name, Key: r.RowID}]; l != nil && l.Command != protocol.Delete {
			continue
		}
		if byTable[t.Name] == nil {
			tables = append(tables, t.Name)
		}
		byTable[t.Name] = append(byTable[t.Name], r.RowID)
	}
	for _, table := range tables {
		held, err := m.spellings(table, byTable[table])
		if err != nil {
			return err
		}
		for k, h := range held {
			if h != k {
				p.spelled[Obj{Table: table, Key: k}] = h
			}
		}
	}
	return nil
}

// respell applies K2 to o, the row of a remote operation (cmd): when the
// node holds it under another spelling of its key with a pending insert
// or update, the node's row takes o's spelling (its pending operation,
// its log entries, the references to it), so that the M and D rules
// meet the two as one row, and the node pushes it under the spelling
// the server logged. A pending delete under o's spelling joins it: the
// node respelled the row itself (a delete and an insert), which is an
// update of the row (C5). A row without pending change that the chunk
// deletes under the node's spelling and writes under o's (the server
// respelled it) is not deleted but respelled, then written: deleted,
// its write would go into it while rows still referencing it hold it
// back (A3), and the held delete would then fail the pull.
func (m *Merger) respell(p *planner, o Obj, cmd protocol.Command) {
	held, ok := p.spelled[o]
	if !ok {
		return
	}
	from := Obj{Table: o.Table, Key: held}
	for next, ok := p.respelled[from]; ok; next, ok = p.respelled[from] {
		from = next
	}
	lf := m.local.ops[from]
	if from == o {
		return
	}
	if lf == nil && cmd != protocol.Delete && p.deletes[from] {
		delete(p.deletes, from)
		p.plan.Deletes = slices.DeleteFunc(p.plan.Deletes, func(d Obj) bool { return d == from })
		p.respelled[from] = o
		p.plan.Respells = append(p.plan.Respells, Respell{Obj: from, To: o.Key})
		return
	}
	if lf == nil || lf.Command == protocol.Delete {
		return
	}
	lo := m.local.ops[o]
	if lo != nil && lo.Command != protocol.Delete {
		return
	}
	p.respelled[from] = o
	p.plan.Respells = append(p.plan.Respells, Respell{Obj: from, To: o.Key, References: true})
	if lo != nil {
		m.local.unset(o)
		lf.Orders = append(slices.Clone(lo.Orders), lf.Orders...)
		slices.Sort(lf.Orders)
		lf.Command, lf.Recreated = protocol.Update, false
	}
	m.local.Rekey(from, o.Key)
	if m.pending[from] {
		m.pending[o] = true
	}
	if cols, ok := m.local.displaced[from]; ok {
		delete(m.local.displaced, from)
		m.local.displaced[o] = cols
	}
	for i := range p.plan.AddOps {
		if p.plan.AddOps[i].Obj == from {
			p.plan.AddOps[i].Obj = o
		}
	}
	if i, ok := p.writes[from]; ok {
		delete(p.writes, from)
		p.writes[o] = i
		p.plan.Writes[i].Obj = o
	}
}

// dependedOn reports whether D1 keeps o from a remote delete: rows with
// pending changes reference it, directly or up a chain, and the node has
// not deleted it itself.
func (m *Merger) dependedOn(o Obj) bool {
	l := m.local.ops[o]
	return len(m.local.children[o]) > 0 && (l == nil || l.Command != protocol.Delete)
}

// one decides a single remote operation (rules M1–M6, D1, D2).
func (m *Merger) one(p *planner, t *protocol.TableSchema, r protocol.Operation) error {
	o := Obj{Table: t.Name, Key: r.RowID}
	l := m.local.ops[o]
	if r.Command == protocol.Delete {
		// D1: a row the node's pending changes reference is kept, and
		// re-created on the server by the next push; a row of a table
		// the node does not push cannot be: the pull is refused (Finish).
		if m.dependedOn(o) {
			if !m.keeps(t.Name) {
				m.refused = append(m.refused, o)
				return nil
			}
			if cols, ok := m.local.displaced[o]; ok {
				// U3 then D1: an earlier chunk parked P for a value the
				// server gave another row, and D1 keeps P, which the next
				// push re-creates with that value. Both sides gave it to
				// different rows, as when the delete comes first (U4).
				return &protocol.UniqueConstraintError{Entries: []protocol.UniqueConstraintEntry{{Table: t.Name, PK: o.Key, Columns: cols}}}
			}
			if l == nil || l.Command == protocol.Update {
				p.replace(o, protocol.Insert, true, nil)
			}
			p.conflict(KindDependency, o, KeepLocal)
			return nil
		}
		switch {
		case l == nil: // M2
			p.del(o)
			// Gone, it holds its parents no more (a row up the chain of
			// a pending one: D1 need not keep them for it).
			m.local.dropRefs(o)
		case l.Command == protocol.Delete: // M6
			p.drop(o)
			p.conflict(KindDeleteDelete, o, TakeRemote)
		default: // M5
			d, err := m.decide(t, o, KindDeleteUpdate, r.Command, l.Command, nil)
			if err != nil {
				return err
			}
			switch d.Resolution {
			case TakeRemote:
				p.drop(o)
				p.del(o)
			case UseRow:
				p.write(o, d.Row)
				p.replace(o, protocol.Insert, true, d.Row)
			default:
				p.replace(o, protocol.Insert, true, nil)
			}
			p.conflict(KindDeleteUpdate, o, d.Resolution)
		}
		return nil
	}
	row := p.payload[t.Name][r.RowID]
	if row == nil {
		// The row was deleted on the server after the operation by a
		// change not yet in a version; its delete comes in a later pull.
		return nil
	}
	switch {
	case l == nil: // M1
		p.write(o, row)
	default: // M4 (deleted here), M3 (updated here)
		kind := KindUpdateUpdate
		if l.Command == protocol.Delete {
			kind = KindUpdateDelete
		}
		d, err := m.decide(t, o, kind, r.Command, l.Command, row)
		if err != nil {
			return err
		}
		switch d.Resolution {
		case TakeRemote:
			p.drop(o)
			p.write(o, row)
		case UseRow:
			p.write(o, d.Row)
			p.replace(o, protocol.Update, false, d.Row)
		default:
			p.conflict(kind, o, d.Resolution)
			return nil
		}
		p.conflict(kind, o, d.Resolution)
	}
	// D2: a parent the node deleted comes back when a row written from the
	// server references it.
	written := p.plan.Writes[p.writes[o]].Row
	for _, fk := range t.ForeignKeys {
		if key, ok := protocol.Key(written[fk.Column]); ok {
			p.restore(Obj{Table: fk.RefTable, Key: key})
		}
	}
	return nil
}

// restore applies D2 to parent, a row that a row written from the server
// references: when the node deleted it and has not pushed the delete, it
// comes back from the payload and the delete is dropped, and so on up its
// own references (a cascade deleted its parent with it).
func (p *planner) restore(parent Obj) {
	if lp := p.m.local.ops[parent]; lp == nil || lp.Command != protocol.Delete {
		return
	}
	prow := p.payload[parent.Table][parent.Key]
	if prow == nil {
		return
	}
	p.drop(parent)
	p.write(parent, prow)
	p.conflict(KindReversedDependency, parent, TakeRemote)
	if t := p.m.reg.TableSchema(parent.Table); t != nil {
		for _, fk := range t.ForeignKeys {
			if key, ok := protocol.Key(prow[fk.Column]); ok {
				p.restore(Obj{Table: fk.RefTable, Key: key})
			}
		}
	}
}

// Restore applies D2 to rows the pull writes outside its chunks (a
// backfill, merge.md E3): of parents, the rows those rows reference, each
// the node deleted and has not pushed comes back from payload (rows by
// table and key), its delete dropped. The plan holds those writes, the
// log edits and, as a chunk's, the parks their unique values need (U1–U4:
// a *protocol.UniqueConstraintError when the node gave such a value to a
// row of its own).
func (m *Merger) Restore(parents []Obj, payload map[string]map[string]protocol.Row) (*Plan, error) {
	p := newPlanner(m, payload)
	for _, o := range parents {
		p.restore(o)
	}
	if err := m.uniques(p); err != nil {
		return nil, err
	}
	return p.plan, nil
}

// decide asks the table's policy about a same-row conflict.
func (m *Merger) decide(t *protocol.TableSchema, o Obj, kind string, remote, local protocol.Command, remoteRow protocol.Row) (Decision, error) {
	c := &Conflict{Kind: kind, Table: t.Name, Key: o.Key, Remote: remote, Local: local, RemoteRow: remoteRow}
	if local != protocol.Delete {
		rows, err := m.lookup.Rows(t.Name, []string{o.Key})
		if err != nil {
			return Decision{}, err
		}
		c.LocalRow = rows[o.Key]
		for _, row := range rows {
			if c.LocalRow == nil && t.KeyKind == protocol.KeyText {
				// The row under another spelling of its key, which K2
				// gives it in this chunk: the policy sees it under o's.
				key, err := json.Marshal(o.Key)
				if err != nil {
					return Decision{}, err
				}
				c.LocalRow = maps.Clone(row)
				c.LocalRow[t.KeyColumn] = key
			}
		}
	}
	d := m.policy(t.Name).Resolve(c)
	switch d.Resolution {
	case KeepLocal, TakeRemote:
	case UseRow:
		if d.Row == nil {
			return Decision{}, fmt.Errorf("merge: policy for %s chose UseRow without a row", t.Name)
		}
		if k, err := t.RowKey(d.Row); err != nil || k != o.Key {
			return Decision{}, fmt.Errorf("merge: policy for %s returned a row with another key", t.Name)
		}
	default:
		return Decision{}, fmt.Errorf("merge: policy for %s returned no resolution", t.Name)
	}
	return d, nil
}

// uniques checks the rows the plan writes against local rows holding the
// same unique values (rules U1–U4).
func (m *Merger) uniques(p *planner) error {
	byTable := map[string][]int{}
	for i, w := range p.plan.Writes {
		byTable[w.Table] = append(byTable[w.Table], i)
	}
	tables := make([]string, 0, len(byTable))
	for t := range byTable {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	var entries []protocol.UniqueConstraintEntry
	for _, name := range tables {
		t := m.reg.TableSchema(name)
		if len(t.Uniques) == 0 {
			continue
		}
		idx := byTable[name]
		rows := make([]protocol.Row, len(idx))
		for i, wi := range idx {
			rows[i] = p.plan.Writes[wi].Row
		}
		for _, cols := range t.Uniques {
			holders, err := m.lookup.UniqueHolders(name, cols, rows)
			if err != nil {
				return err
			}
			for i, wi := range idx {
				holder, ok := holders[i]
				w := p.plan.Writes[wi]
				for to, moved := p.respelled[Obj{Table: name, Key: holder}]; moved; to, moved = p.respelled[Obj{Table: name, Key: holder}] {
					holder = to.Key // the holder, respelled in this chunk (K2)
				}
				if !ok || holder == w.Key {
					continue // U1: no other holder
				}
				h := Obj{Table: name, Key: holder}
				switch {
				case p.deletes[h] || p.parks[h]:
					// U1: deleted first, the value is free (or H is
					// parked already).
				case m.local.ops[h] != nil && m.local.ops[h].Command != protocol.Delete:
					// U4: the node changed the holder itself.
					entries = append(entries, protocol.UniqueConstraintEntry{Table: name, PK: holder, Columns: cols})
				default:
					// U2 (the holder is rewritten in this chunk) or U3 (in
					// a later one): park it first to free the value.
					p.parks[h] = true
					p.plan.Parks = append(p.plan.Parks, h)
					if _, rewritten := p.writes[h]; !rewritten {
						m.local.displaced[h] = cols
					}
					p.conflict(KindUniqueSwap, h, TakeRemote)
				}
			}
		}
	}
	if len(entries) > 0 {
		return &protocol.UniqueConstraintError{Entries: entries}
	}
	return nil
}
