package e2e_test

import (
	"context"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestDeletedKeyNotReused: a node never takes an integer key whose row the
// server deleted before the node pulled (merge.md K1: the key sequences
// move past the server's greatest keys at every pull). Else b, which still
// holds the deleted row with a pending edit, reads the delete and c's new
// insert over the same key as one row updated, keeps its edit, and pushes
// it over c's row: c's row is lost on every node. c joins by a sync or by
// a repair (whose header carries the greatest keys too). Found by the
// long convergence soak (TestConvergence, sqlite/int/default).
func TestDeletedKeyNotReused(t *testing.T) {
	t.Parallel()
	setups := []struct{ name, server, nodes string }{
		{"sqlite", dbtest.KindSQLite, ""},
		{"postgres_server", dbtest.KindPostgres, ""},
		{"postgres", dbtest.KindPostgres, dbtest.KindPostgres},
	}
	kind := mrKinds[0] // integer keys
	if !kind.isInt() {
		t.Fatal("mrKinds[0] is not the integer kind")
	}
	for _, su := range setups {
		for _, first := range []string{"sync", "repair"} {
			t.Run(su.name+"/"+first, func(t *testing.T) {
				t.Parallel()
				e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: su.server, nodes: su.nodes,
					keys: map[string]string{}, syms: map[string]string{}}
				e.start(nil)
				e.parent(e.a.DB, "P1", "p1")
				e.child(e.a.DB, "C1", "P1", "c1")
				e.child(e.a.DB, "C2", "P1", "c2") // the table's greatest key
				e.sync(e.a)
				e.sync(e.b)

				// a deletes C2; b, offline, edits it.
				e.del(e.a.DB, mrChildren, "C2")
				e.sync(e.a)
				e.retitle(e.b.DB, "C2", "c2-b")

				// c joins after the delete, by a sync or a repair: it never
				// held C2.
				c := synctest.NewClientWith(t, e.srv, "c", e.kind.nodeDB(t, e.nodes), e.kind.schema, e.kind.models, nil)
				if first == "repair" {
					if _, err := c.Repair(e.ctx, nil); err != nil {
						t.Fatalf("c repair: %v", err)
					}
				} else {
					e.sync(c)
				}
				key := e.child(c.DB, "C3", "P1", "c3")
				if key == e.keys["C2"] {
					t.Errorf("c's insert took key %s, which the server used for C2 and deleted", key)
				}
				e.sync(c)

				// b pushes its edit of the deleted row; then everyone syncs.
				e.sync(e.b)
				e.sync(c)
				e.sync(e.a)
				e.sync(e.b)
				_, children := e.converged()
				ds := synctest.Dump(t, e.srv.DB, e.srv.Reg)
				if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), ds); d != "" {
					t.Fatalf("c and the server differ:\n%s", d)
				}
				if children["c3"] != "p1" {
					t.Fatalf("c's row C3 (title c3) is gone: the server's children %v", children)
				}
				for _, n := range []*synctest.Client{e.a, e.b, c} {
					if got := e.pending(n); len(got) != 0 {
						t.Fatalf("%s still has pending operations: %v", n.Name, got)
					}
				}
			})
		}
	}
}
