package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestScopeInsertOverTakenKeyRetries: alice and carol, each in a project
// of their own, insert a task at once; their nodes pick the same key
// (K1) and carol pushes first. The server refuses alice's insert over
// carol's row out_of_scope (it may not tell her that row changed); her
// Sync's pull then moves the insert to a fresh key, so the refusal no
// longer holds: Sync pushes again and succeeds. Before, it returned a
// *dbsync.ScopeError naming alice's new task, which the README tells the
// application to settle with DiscardPending: her row lost.
func TestScopeInsertOverTakenKeyRetries(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			a := scopedClient(t, srv, "alice", "1")
			c := scopedClient(t, srv, "carol", "1")
			lcExec(t, a.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'alice', 'p1')", "INSERT INTO tasks (project_id, title) VALUES (1, 'a0')")
			mustSync(t, a)
			lcExec(t, c.DB, "INSERT INTO projects (id, owner_id, name) VALUES (2, 'carol', 'p2')")
			mustSync(t, c)
			mustSync(t, a)
			for round := range 3 {
				lcExec(t, a.DB, fmt.Sprintf("INSERT INTO tasks (project_id, title) VALUES (1, 'a%d')", round+1))
				lcExec(t, c.DB, fmt.Sprintf("INSERT INTO tasks (project_id, title) VALUES (2, 'c%d')", round+1))
				if ka, kc := keys(t, a.DB, "tasks"), keys(t, c.DB, "tasks"); ka[len(ka)-1] != kc[len(kc)-1] {
					t.Fatalf("round %d: the nodes picked keys %v and %v, not the same", round, ka, kc)
				}
				mustSync(t, c)
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("round %d: alice's sync: %v", round, err)
				}
				if p, err := a.Pending(ctx); err != nil || len(p) > 0 {
					t.Fatalf("round %d: alice still has %v pending (%v)", round, p, err)
				}
				mustSync(t, c)
			}
			var n int
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM tasks").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			if n != 7 {
				t.Fatalf("the server holds %d tasks, want 7", n)
			}
		})
	}
}

// TestScopeInsertOverTakenKeyWithChild: the same with a parent: alice
// creates a project and a task in it while carol creates a project, on
// the same key. The refusal names alice's project; her pull moves it and
// its task's reference (K1); Sync pushes both again.
func TestScopeInsertOverTakenKeyWithChild(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			a := scopedClient(t, srv, "alice", "1")
			c := scopedClient(t, srv, "carol", "1")
			lcExec(t, a.DB, "INSERT INTO projects (owner_id, name) VALUES ('alice', 'p1')")
			mustSync(t, a)
			mustSync(t, c)
			lcExec(t, a.DB, "INSERT INTO projects (id, owner_id, name) VALUES (2, 'alice', 'pa')", "INSERT INTO tasks (project_id, title) VALUES (2, 'ta')")
			lcExec(t, c.DB, "INSERT INTO projects (id, owner_id, name) VALUES (2, 'carol', 'pc')")
			mustSync(t, c)
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("alice's sync: %v", err)
			}
			var n int
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM tasks t JOIN projects p ON p.id = t.project_id WHERE p.owner_id = 'alice' AND t.title = 'ta'").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("alice's task under her project on the server: %d, want 1", n)
			}
		})
	}
}
