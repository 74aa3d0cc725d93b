package store

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
)

// LateDeletes deletes the rows an apply deletes, but holds back those
// that rows it does not delete (yet) still reference: a child the apply
// moves away from a deleted parent is written after the deletes, and
// deleted first, the parent's ON DELETE CASCADE (PostgreSQL fires it at
// once, even with the constraint deferred) would delete the child and its
// own children; the write brings the child back, never its children. The
// apply deletes (Delete), parks the held rows its writes take unique
// values of (Park), writes, and at its end (Finish) deletes the held rows,
// which nothing may reference any more. An apply in parts (a pull's
// chunks) keeps one LateDeletes for all of them: a child may be moved by
// a later part than the one deleting its parent. The zero value is ready.
type LateDeletes struct {
	held map[*dbsync.Table]map[string]bool
}

// Held reports whether the row of t with key is deleted by the apply but
// held back: to the apply, it is gone.
func (l *LateDeletes) Held(t *dbsync.Table, key string) bool { return l.held[t][key] }

// Release stops holding back the row of t with key: the apply keeps it
// (a later part wrote it under another spelling of its key, merge.md K2).
func (l *LateDeletes) Release(t *dbsync.Table, key string) { delete(l.held[t], key) }

// HeldIn reports whether the apply holds back rows of t.
func (l *LateDeletes) HeldIn(t *dbsync.Table) bool { return len(l.held[t]) > 0 }

// Delete deletes the rows with the given keys (by table; tables of reg),
// children first, but holds back those that other rows still reference
// (held rows included). Rows held by earlier calls are not looked at
// again until Finish: a pull in many chunks does not query them per
// chunk.
func (l *LateDeletes) Delete(ctx context.Context, db bun.IDB, reg *dbsync.Registry, deletes map[*dbsync.Table][]string) error {
	tables := reg.Tables()
	for i := len(tables) - 1; i >= 0; i-- {
		t := tables[i]
		if keys := deletes[t]; len(keys) > 0 {
			if err := l.delete(ctx, db, reg, t, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// delete deletes the rows of t with keys that nothing else references
// and holds the others.
func (l *LateDeletes) delete(ctx context.Context, db bun.IDB, reg *dbsync.Registry, t *dbsync.Table, keys []string) error {
	keep, err := referenced(ctx, db, reg, t, keys)
	if err != nil {
		return err
	}
	var now []string
	for _, k := range keys {
		if keep[k] {
			add(&l.held, t, k)
		} else {
			now = append(now, k)
			delete(l.held[t], k)
		}
	}
	return Delete(ctx, db, t, now)
}

// referenced returns the keys of t that rows other than rows of t with
// those keys reference. Rows of child tables deleted before are gone
// (children first); a row of t referencing another (a tree) counts
// unless it is among keys and not referenced itself (HoldAncestors).
func referenced(ctx context.Context, db bun.IDB, reg *dbsync.Registry, t *dbsync.Table, keys []string) (map[string]bool, error) {
	among := make(map[string]bool, len(keys))
	for _, k := range keys {
		among[k] = true
	}
	keep := map[string]bool{}
	var self []Reference
	for _, ch := range reg.Children(t.Name) {
		refs, err := Referencing(ctx, db, ch.Table, ch.FK.Column, t, keys)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if ch.Table == t && among[r.Child] {
				self = append(self, r)
				continue
			}
			keep[r.Parent] = true
		}
	}
	for _, k := range HoldAncestors(self, func(k string) bool { return keep[k] }) {
		keep[k] = true
	}
	return keep, nil
}

// Park moves held rows of t out of the way of the unique values writes
// (rows about to be written to t) take (store.Park): whoever planned the
// writes counted them as deleted.
func (l *LateDeletes) Park(ctx context.Context, db bun.IDB, t *dbsync.Table, writes []reflect.Value) error {
	if len(l.held[t]) == 0 || len(writes) == 0 {
		return nil
	}
	var keys []string
	seen := map[string]bool{}
	for _, cols := range t.Uniques {
		holders, err := UniqueHolders(ctx, db, t, cols, writes)
		if err != nil {
			return err
		}
		for _, h := range holders {
			if l.held[t][h] && !seen[h] {
				seen[h] = true
				keys = append(keys, h)
			}
		}
	}
	return Park(ctx, db, t, keys, writes)
}

// Finish deletes the held rows, children first, once the apply wrote
// everything, and fails with dbsync.ErrForeignKey, naming them, when rows still
// reference held rows: they are left referencing rows the apply deletes.
func (l *LateDeletes) Finish(ctx context.Context, db bun.IDB, reg *dbsync.Registry) error {
	deletes := map[*dbsync.Table][]string{}
	for t, keys := range l.held {
		deletes[t] = setKeys(keys)
	}
	if err := l.Delete(ctx, db, reg, deletes); err != nil {
		return err
	}
	var problems []string
	for _, t := range reg.Tables() {
		keys := setKeys(l.held[t])
		if len(keys) == 0 {
			continue
		}
		for _, ch := range reg.Children(t.Name) {
			refs, err := Referencing(ctx, db, ch.Table, ch.FK.Column, t, keys)
			if err != nil {
				return err
			}
			for _, r := range refs {
				if len(problems) < 5 {
					problems = append(problems, fmt.Sprintf("%s %s references deleted %s %s (column %s)", ch.Table.Name, r.Child, t.Name, r.Parent, ch.FK.Column))
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", dbsync.ErrForeignKey, strings.Join(problems, "; "))
	}
	return nil
}

// HoldAncestors extends a hold up a table that references itself: refs
// are (child, parent) pairs among rows of the table an apply deletes, and
// held reports the rows held to start with. It returns the parents,
// grandparents and so on of held rows that held does not report, each
// once, walking up from every held row: linear in refs, however deep
// the tree.
func HoldAncestors(refs []Reference, held func(key string) bool) []string {
	up := make(map[string][]string, len(refs))
	for _, r := range refs {
		up[r.Child] = append(up[r.Child], r.Parent)
	}
	var added []string
	seen := map[string]bool{}
	var stack []string
	for child := range up {
		if held(child) {
			stack = append(stack, child)
		}
	}
	for len(stack) > 0 {
		k := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, p := range up[k] {
			if !held(p) && !seen[p] {
				seen[p] = true
				added = append(added, p)
				stack = append(stack, p)
			}
		}
	}
	return added
}
