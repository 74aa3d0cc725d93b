package client_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestPullMovesChildThenDeletesParent: another node moves child C from
// parent P1 to P3 and deletes P1; the node pulls. Deleting P1 before
// writing C let PostgreSQL's ON DELETE CASCADE (it fires at once, even
// with the constraint deferred) delete C and its children; the write of C
// brought C back, not its children: the node silently lost them. The
// node's database is SQLite (foreign keys off while a pull applies: no
// cascade) or PostgreSQL. With rename, P3 takes P1's unique name in the
// same push (P1 must be moved out of its way before it is deleted); with
// chunked, the pull comes one operation per chunk (P1's delete comes
// before C's update). With deep, in a table referencing itself, node N3
// of the chain N1 ← N2 ← N3 ← N4 moves under root N5, and N2 and N1 are
// deleted: both wait for N3's write, else the cascade from N1 takes N4.
func TestPullMovesChildThenDeletesParent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                  string
		rename, chunked, deep bool
	}{
		{"move", false, false, false},
		{"move_rename", true, false, false},
		{"move_chunked", false, true, false},
		{"move_rename_chunked", true, true, false},
		{"deep", false, false, true},
		{"deep_chunked", false, true, true},
	}
	for _, tc := range cases {
		for _, kind := range dbtest.Kinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				schema := func(ctx context.Context, db bun.IDB) error {
					if err := testmodels.CreateTree(ctx, db); err != nil {
						return err
					}
					return testmodels.CreateNodes(ctx, db)
				}
				models := append(testmodels.Tree(), testmodels.Nodes()...)
				srv := synctest.NewServerWith(t, synctest.ServerSQLite(t, "tree+nodes", schema, models), schema, models, nil)
				a := synctest.NewClientWith(t, srv, "a", synctest.ClientSQLite(t, "tree+nodes", schema, models), schema, models, nil)
				var cfg *client.Config
				if tc.chunked {
					cfg = &client.Config{ChunkSize: 1}
				}
				b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "tree+nodes", schema, models), schema, models, cfg)

				exec(t, a.DB, "INSERT INTO tree_parents (id, name) VALUES (1, 'p1'), (3, 'p3')")
				exec(t, a.DB, "INSERT INTO tree_children (id, parent_id, title) VALUES (1, 1, 'c'), (3, 3, 'c3')")
				exec(t, a.DB, "INSERT INTO tree_grandchildren (id, child_id, title) VALUES (1, 1, 'g1'), (2, 1, 'g2')")
				exec(t, a.DB, "INSERT INTO tree_nodes (id, parent_id, name) VALUES (1, NULL, 'n1'), (2, 1, 'n2'), (3, 2, 'n3'), (4, 3, 'n4'), (5, NULL, 'n5')")
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatalf("sync %s: %v", c.Name, err)
					}
				}
				if n := count(t, b.DB, "tree_grandchildren", ""); n != 2 {
					t.Fatalf("b holds %d grandchildren before the move, want 2", n)
				}

				if tc.deep {
					exec(t, a.DB, "UPDATE tree_nodes SET parent_id = 5 WHERE id = 3")
					exec(t, a.DB, "DELETE FROM tree_nodes WHERE id = 2")
					exec(t, a.DB, "DELETE FROM tree_nodes WHERE id = 1")
				} else {
					exec(t, a.DB, "UPDATE tree_children SET parent_id = 3 WHERE id = 1")
					exec(t, a.DB, "DELETE FROM tree_parents WHERE id = 1")
				}
				if tc.rename {
					exec(t, a.DB, "UPDATE tree_parents SET name = 'p1' WHERE id = 3")
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("sync a: %v", err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatalf("sync b: %v", err)
				}
				if tc.deep {
					if n := count(t, b.DB, "tree_nodes", "id = 3 AND parent_id = 5"); n != 1 {
						t.Errorf("b holds %d nodes 3 under node 5, want 1", n)
					}
					if n := count(t, b.DB, "tree_nodes", "id = 4 AND parent_id = 3"); n != 1 {
						t.Errorf("b holds %d nodes 4 under node 3, want 1", n)
					}
					if n := count(t, b.DB, "tree_nodes", ""); n != 3 {
						t.Errorf("b holds %d nodes, want 3", n)
					}
				} else {
					if n := count(t, b.DB, "tree_children", "id = 1 AND parent_id = 3"); n != 1 {
						t.Errorf("b holds %d children 1 under parent 3, want 1", n)
					}
					if n := count(t, b.DB, "tree_grandchildren", "child_id = 1"); n != 2 {
						t.Errorf("b holds %d grandchildren of child 1, want 2", n)
					}
				}
				if n, want := count(t, b.DB, "tree_parents", ""), map[bool]int{true: 2, false: 1}[tc.deep]; n != want {
					t.Errorf("b holds %d parents, want %d", n, want)
				}
				if n := count(t, b.DB, "sync_operations", ""); n != 0 {
					t.Errorf("the pull left %d operations in b's log, want none", n)
				}
				converged(t, srv, a, b)
			})
		}
	}
}
