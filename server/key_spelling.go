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
