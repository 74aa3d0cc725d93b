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
// that rows it does not delete (yet) still reference, until nothing does:
// a child the apply moves away from a deleted parent is written after the
// deletes, and deleted first, the parent's ON DELETE CASCADE (PostgreSQL
// fires it at once, even with the constraint deferred) would delete the
// child and its own children; the write brings the child back, never its
// children. The apply deletes (Delete), parks the held rows its writes
// take unique values of (Park), writes, deletes what the writes freed
// (Delete with nothing new), and at its end (Finish) nothing may still
// reference a held row. An apply in parts (a pull's chunks) keeps one
// LateDeletes for all of them: a child may be moved by a later part than
// the one deleting its parent. The zero value is ready.
type LateDeletes struct {
	held map[*dbsync.Table]map[string]bool
}

// Held reports whether the row of t with key is deleted by the apply but
// held back: to the apply, it is gone.
func (l *LateDeletes) Held(t *dbsync.Table, key string) bool { return l.held[t][key] }

// Delete adds deletes (keys by table) to the rows to delete and deletes,
// children first, every one that no row outside them references; the
// others are held back for a later call.
func (l *LateDeletes) Delete(ctx context.Context, db bun.IDB, reg *dbsync.Registry, deletes map[*dbsync.Table][]string) error {
	for t, keys := range deletes {
		add(&l.held, t, keys...)
	}
	tables := reg.Tables()
	for i := len(tables) - 1; i >= 0; i-- {
		t := tables[i]
		if len(l.held[t]) == 0 {
			continue
		}
		keep, err := l.referenced(ctx, db, reg, t)
		if err != nil {
			return err
		}
		var now []string
		for k := range l.held[t] {
			if !keep[k] {
				now = append(now, k)
			}
		}
		if err := Delete(ctx, db, t, now); err != nil {
			return err
		}
		for _, k := range now {
			delete(l.held[t], k)
		}
	}
	return nil
}

// referenced returns the held keys of t that rows other than held rows of
// t about to be deleted reference. Rows of child tables deleted by the
// same call are gone already (children first); a row of t referencing
// another (a tree) counts unless it is deleted too, which is settled by
// repeating until nothing changes.
func (l *LateDeletes) referenced(ctx context.Context, db bun.IDB, reg *dbsync.Registry, t *dbsync.Table) (map[string]bool, error) {
	keys := setKeys(l.held[t])
	keep := map[string]bool{}
	var self []Reference
	for _, ch := range reg.Children(t.Name) {
		refs, err := Referencing(ctx, db, ch.Table, ch.FK.Column, t, keys)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if ch.Table == t && l.held[t][r.Child] {
				self = append(self, r)
				continue
			}
			keep[r.Parent] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, r := range self {
			if keep[r.Child] && !keep[r.Parent] {
				keep[r.Parent], changed = true, true
			}
		}
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

// Finish deletes what is left once the apply wrote everything, and fails
// with ErrForeignKey, naming them, when rows still reference held rows:
// they are left referencing rows the apply deletes.
func (l *LateDeletes) Finish(ctx context.Context, db bun.IDB, reg *dbsync.Registry) error {
	if err := l.Delete(ctx, db, reg, nil); err != nil {
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
		return fmt.Errorf("%w: %s", ErrForeignKey, strings.Join(problems, "; "))
	}
	return nil
}
