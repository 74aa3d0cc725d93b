package client_test

import (
	"context"
	"testing"

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
// before C's update). With deep, grandchild G1 moves to child C3 under P3
// and C and P1 are deleted: C waits for G1's write, and P1 for C.
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
				schema, models := testmodels.CreateTree, testmodels.Tree()
				srv := synctest.NewServerWith(t, synctest.ServerSQLite(t, "tree", schema, models), schema, models, nil)
				a := synctest.NewClientWith(t, srv, "a", synctest.ClientSQLite(t, "tree", schema, models), schema, models, nil)
				var cfg *client.Config
				if tc.chunked {
					cfg = &client.Config{ChunkSize: 1}
				}
				b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "tree", schema, models), schema, models, cfg)

				exec(t, a.DB, "INSERT INTO tree_parents (id, name) VALUES (1, 'p1'), (3, 'p3')")
				exec(t, a.DB, "INSERT INTO tree_children (id, parent_id, title) VALUES (1, 1, 'c'), (3, 3, 'c3')")
				exec(t, a.DB, "INSERT INTO tree_grandchildren (id, child_id, title) VALUES (1, 1, 'g1'), (2, 1, 'g2')")
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatalf("sync %s: %v", c.Name, err)
					}
				}
				if n := count(t, b.DB, "tree_grandchildren", ""); n != 2 {
					t.Fatalf("b holds %d grandchildren before the move, want 2", n)
				}

				if tc.deep {
					exec(t, a.DB, "UPDATE tree_grandchildren SET child_id = 3 WHERE id = 1")
					exec(t, a.DB, "DELETE FROM tree_grandchildren WHERE id = 2")
					exec(t, a.DB, "DELETE FROM tree_children WHERE id = 1")
				} else {
					exec(t, a.DB, "UPDATE tree_children SET parent_id = 3 WHERE id = 1")
				}
				exec(t, a.DB, "DELETE FROM tree_parents WHERE id = 1")
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
					if n := count(t, b.DB, "tree_grandchildren", "id = 1 AND child_id = 3"); n != 1 {
						t.Errorf("b holds %d grandchildren 1 under child 3, want 1", n)
					}
				} else {
					if n := count(t, b.DB, "tree_children", "id = 1 AND parent_id = 3"); n != 1 {
						t.Errorf("b holds %d children 1 under parent 3, want 1", n)
					}
					if n := count(t, b.DB, "tree_grandchildren", "child_id = 1"); n != 2 {
						t.Errorf("b holds %d grandchildren of child 1, want 2", n)
					}
				}
				if n := count(t, b.DB, "tree_parents", ""); n != 1 {
					t.Errorf("b holds %d parents, want 1", n)
				}
				if n := count(t, b.DB, "sync_operations", ""); n != 0 {
					t.Errorf("the pull left %d operations in b's log, want none", n)
				}
				converged(t, srv, a, b)
			})
		}
	}
}
