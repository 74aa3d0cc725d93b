package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// A text key's type or collation may take two spellings for one row
// (SQLite's NOCASE, citext or a nondeterministic ICU collation on
// PostgreSQL: "ABC" names the row "abc"). A push that writes a row under
// another spelling of its key than the server's writes that row, which
// keeps its key, and would log the push's spelling: the other nodes'
// pulls would find no row under it, and never get the change. Such a
// write is refused (respelling.refusal), after the writes and inside the
// push's transaction, which rolls back: for a scoped table by the scope
// check (scopeGuard.after, stagedScope.after), which tells a row out of
// the node's scope from one respelled; for every other table (a server
// without scopes, a global table) by respelledWrites.

// A delete under another spelling deletes the row (the database finds
// it), and is logged under the server's spelling (deleteSpellings): the
// nodes hold the row so, and one whose key column compares bytes would
// find no row under the push's spelling and keep its own.

// respellInPlace respells in place, in a table t whose keys the
// database does not compare byte for byte (s.keyEq), each row the push
// deletes and writes again under another spelling of its key: a node's
// case-only edit of the key ("fr" to "FR" under NOCASE or a
// nondeterministic ICU collation), which its capture logs as the delete
// of "fr" and the insert of "FR", with the updates of the rows
// referencing it (ON UPDATE CASCADE; the orphan checks, run before, made
// sure the push rewrites or deletes every row that references it).
// Deleted, the row would be held back for those rows (late), the write
// of "FR" would go into it, keeping its key, and the late delete would
// find it still referenced: the push was refused (409 foreign_key) at
// every sync. The row's key is updated to the written spelling before
// the writes (on PostgreSQL an ON UPDATE CASCADE moves the rows
// referencing it, which the push writes anyway). writes and deletes hand
// the push's keys of t to their fn, a page at a time. It returns, by
// written key, the server's spelling before (the write is logged as an
// insert, after the delete, which the log keeps), and the delete keys
// not to delete (nor count as deleted).
func (s *Server) respellInPlace(ctx context.Context, tx bun.IDB, t *dbsync.Table,
	writes, deletes func(fn func(keys []string) error) error) (respelt map[string]string, kept map[string]bool, err error) {
	if s.keyEq[t.Name] == "" || t.KeyKind != protocol.KeyText {
		return nil, nil, nil
	}
	byHeld := map[string]string{} // the server's spelling: the written one
	if err := writes(func(keys []string) error {
		held, err := store.HeldSpellings(ctx, tx, t, keys)
		for k, h := range held {
			byHeld[h] = k
		}
		return err
	}); err != nil || len(byHeld) == 0 {
		return nil, nil, err
	}
	if err := deletes(func(keys []string) error {
		spelled, err := store.HeldSpellings(ctx, tx, t, keys)
		if err != nil {
			return err
		}
		for _, k := range keys {
			h := k
			if sp, ok := spelled[k]; ok {
				h = sp
			}
			written, ok := byHeld[h]
			if !ok {
				continue
			}
			if respelt == nil {
				respelt, kept = map[string]string{}, map[string]bool{}
			}
			respelt[written], kept[k] = h, true
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	for _, written := range setKeysOf(respelt) {
		to, err := t.ParseKey(written)
		if err != nil {
			return nil, nil, err
		}
		from, err := t.ParseKey(respelt[written])
		if err != nil {
			return nil, nil, err
		}
		if _, err := tx.NewRaw("UPDATE ? SET ? = ? WHERE ? = ?", bun.Ident(t.Name), bun.Ident(t.PK.Name), to, bun.Ident(t.PK.Name), from).Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("respell %s %s as %s: %w", t.Name, respelt[written], written, err)
		}
	}
	return respelt, kept, nil
}

// setKeysOf returns the keys of m, sorted.
func setKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pages hands keys to fn in one page (respellInPlace's writes and
// deletes for a push in one request).
func pages(keys []string) func(fn func(keys []string) error) error {
	return func(fn func(keys []string) error) error {
		if len(keys) == 0 {
			return nil
		}
		return fn(keys)
	}
}

// deleteSpellings returns, for keys of t a push deletes, read before the
// deletes, the server's spelling of each row a key names under another
// spelling (store.HeldSpellings), in the tables whose keys the database
// does not compare byte for byte (s.keyEq); no other table pays
// anything.
func (s *Server) deleteSpellings(ctx context.Context, tx bun.IDB, t *dbsync.Table, keys []string) (map[string]string, error) {
	if s.keyEq[t.Name] == "" || len(keys) == 0 {
		return nil, nil
	}
	return store.HeldSpellings(ctx, tx, t, keys)
}

// respelledWrites adds to r, after the writes of plan (a whole push, or
// one chunk of a chunked push), the rows it wrote under another spelling
// of their keys than the server's, in the tables whose keys the database
// does not compare byte for byte (s.keyEq) and the scope check does not
// check: one query per such table and batch of keys (more for a batch
// that holds such a row, store.ExistingAsAsked); no other table pays
// anything.
func (s *Server) respelledWrites(ctx context.Context, tx bun.IDB, plan *pushPlan, r *respelling) (*respelling, error) {
	for _, tp := range plan.tables {
		t := tp.table
		if s.keyEq[t.Name] == "" || !s.scopes.global(t) || len(tp.keys) == 0 {
			continue
		}
		keys := setKeys(tp.keys)
		in, err := store.Existing(ctx, tx, t, keys)
		if err != nil {
			return nil, err
		}
		// A row written and not there now (deleted after the writes by
		// the push itself) names no other.
		_, other, err := respelled(ctx, tx, t, keys, in, nil)
		if err != nil {
			return nil, err
		}
		r = r.add(t, other)
	}
	return r, nil
}

// respelled sorts the keys of rows the push wrote that are not found by
// their own spelling (in: those that are, read byte for byte, among the
// rows that meet cond: in the node's scope, or nil for every row) into
// those that are not there (missing: out of the node's scope) and those
// that name a row there as the database compares keys (other): under a
// text key's collation that ignores case, a write of the row "abc" under
// the key "ABC", which wrote that row and left its key as it was.
func respelled(ctx context.Context, tx bun.IDB, t *dbsync.Table, keys []string, in map[string]bool, cond schema.QueryAppender) (missing, other []string, err error) {
	for _, k := range keys {
		if !in[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 || t.KeyKind != protocol.KeyText {
		return missing, nil, nil
	}
	asked, err := store.ExistingAsAsked(ctx, tx, t, missing, cond)
	if err != nil {
		return nil, nil, err
	}
	missing = slices.DeleteFunc(missing, func(k string) bool {
		if asked[k] {
			other = append(other, k)
		}
		return asked[k]
	})
	return missing, other, nil
}

// respelling is a row a push wrote (in the node's scope, on a server
// with scopes) under another spelling of its key than the server's
// (respelled), and how many more. nil: none.
type respelling struct {
	table *dbsync.Table
	key   string
	more  int
}

// add records other, keys of rows of t written under another spelling
// than the server's, and returns r (a new one if r is nil and there are
// such keys).
func (r *respelling) add(t *dbsync.Table, other []string) *respelling {
	if len(other) == 0 {
		return r
	}
	if r == nil {
		r = &respelling{table: t, key: other[0], more: -1}
	}
	r.more += len(other)
	return r
}

// refusal is the push's refusal (dbsync.ErrPushRejected) for such rows,
// nil when there are none: not out of the node's scope, but under a key
// the pulls of other nodes would not find (the server's log would name
// the row by a key they do not hold: they would never get the change).
// It names the server's spelling.
func (r *respelling) refusal(ctx context.Context, tx bun.IDB) error {
	if r == nil {
		return nil
	}
	arg, err := r.table.ParseKey(r.key)
	if err != nil {
		return err
	}
	var stored []string
	if err := tx.NewRaw("SELECT CAST(? AS TEXT) FROM ? WHERE ? = ?", bun.Ident(r.table.PK.Name), bun.Ident(r.table.Name), bun.Ident(r.table.PK.Name), arg).
		Scan(ctx, &stored); err != nil {
		return fmt.Errorf("read the key of %s %s: %w", r.table.Name, r.key, err)
	}
	held := ""
	if len(stored) > 0 {
		held = fmt.Sprintf(" as %q", stored[0])
	}
	more := ""
	if r.more > 0 {
		more = fmt.Sprintf(" (and %d more such rows)", r.more)
	}
	return fmt.Errorf("%w: the push writes %s %q%s, which the server holds%s: the key column's collation takes the two keys for one row, and the server writes a row only under its own spelling of the key (its other nodes would not get the change): write the row under that key, or give the change up with DiscardPending",
		dbsync.ErrPushRejected, r.table.Name, r.key, more, held)
}
