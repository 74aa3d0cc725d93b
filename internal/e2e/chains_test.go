package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

func chainModels() []any { return append(testmodels.Tree(), testmodels.Nodes()...) }

func createChains(ctx context.Context, db bun.IDB) error {
	if err := testmodels.CreateTree(ctx, db); err != nil {
		return err
	}
	return testmodels.CreateNodes(ctx, db)
}

// TestPendingUnderDeletedChain: node A, offline, inserts leaves at the
// bottom of foreign key chains (across tables, and inside one table)
// whose roots node B deletes, the deletes cascading. A's next Sync, by a
// plain pull or by a reset past the server's trim, keeps every row of
// the chains its leaves need (D1 up the chain) and pushes them: nothing
// of A's is lost, and all converge. Before, D1 kept only the leaves'
// direct parents and the pull failed on a foreign key, at every Sync.
func TestPendingUnderDeletedChain(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, trim := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/trim=", trim), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				cfg := &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
				srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "chains", createChains, chainModels()), createChains, chainModels(), cfg)
				a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "chains", createChains, chainModels()), createChains, chainModels(), nil)
				b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "chains", createChains, chainModels()), createChains, chainModels(), nil)
				lcExec(t, b.DB,
					"INSERT INTO tree_parents (id, name) VALUES (1, 'p1')",
					"INSERT INTO tree_children (id, parent_id, title) VALUES (1, 1, 'c1')",
					"INSERT INTO tree_grandchildren (id, child_id, title) VALUES (1, 1, 'g1')",
					"INSERT INTO tree_nodes (id, parent_id, name) VALUES (1, NULL, 'n1'), (2, 1, 'n2'), (3, 2, 'n3')")
				for _, n := range []*synctest.Client{b, a} {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				lcExec(t, a.DB,
					"INSERT INTO tree_grandchildren (id, child_id, title) VALUES (10, 1, 'g10-a')",
					"INSERT INTO tree_nodes (id, parent_id, name) VALUES (10, 3, 'n10-a')")
				lcExec(t, b.DB, "DELETE FROM tree_parents WHERE id = 1", "DELETE FROM tree_nodes WHERE id = 1")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if trim {
					clk.Advance(25 * time.Hour)
					lcExec(t, b.DB, "INSERT INTO tree_parents (id, name) VALUES (2, 'p2')")
					for range 2 {
						if _, err := b.Sync(ctx); err != nil {
							t.Fatal(err)
						}
					}
					if tr, err := srv.Srv.Trim(ctx); err != nil || tr.RetiredNodes != 1 {
						t.Fatalf("trim %+v %v", tr, err)
					}
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("A's sync: %v", err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				want := synctest.Dump(t, srv.DB, srv.Reg)
				for name, db := range map[string]bun.IDB{"a": a.DB, "b": b.DB} {
					if d := synctest.Diff(want, synctest.Dump(t, db, srv.Reg)); d != "" {
						t.Errorf("%s differs from the server:\n%s", name, d)
					}
				}
				var g, n int
				if err := srv.DB.NewRaw("SELECT COUNT(*) FROM tree_grandchildren WHERE title = 'g10-a'").Scan(ctx, &g); err != nil {
					t.Fatal(err)
				}
				if err := srv.DB.NewRaw("SELECT COUNT(*) FROM tree_nodes WHERE name = 'n10-a'").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				if g != 1 || n != 1 {
					t.Errorf("A's pending inserts on the server: grandchild %d, node %d, want 1 and 1", g, n)
				}
			})
		}
	}
}
