package e2e_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestS2MoveOutRefusesPending pins merge.md S2: a pull that moves out rows
// the node has pending changes to, or rows a local row still references,
// fails whole with a *dbsync.ScopeError naming those rows by the keys they
// have on the node (before K1 moved them), applies nothing and loses
// nothing; DiscardPending on its entries, then a pull, moves the rows out.
// On both dialects, over HTTP.
func TestS2MoveOutRefusesPending(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		local string // bob's offline change, on project 1 shared with him
		named []protocol.ScopeEntry
	}{
		{"pending_update", "UPDATE tasks SET title = 'offline' WHERE id = 2", []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
		{"pending_delete", "DELETE FROM tasks WHERE id = 2", []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
		// Task 3, which K1 moves past ann's task 5, is named 3.
		{"child_created_under_it", "INSERT INTO tasks (id, project_id, title) VALUES (3, 1, 'new')", []protocol.ScopeEntry{{Table: "tasks", PK: "3"}}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := newScopedServer(t, kind)
				ann, bob := scopedClient(t, srv, "ann", "phone"), scopedClient(t, srv, "bob", "phone")
				run(t, ann.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared'), (2, 'ann', 'private')")
				run(t, ann.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b')")
				run(t, ann.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
				mustSync(t, ann)
				mustSync(t, bob)
				wantKeys(t, bob, "tasks", "1", "2")

				run(t, bob.DB, tc.local)
				// Ann uses task keys up to 5 (out of bob's scope: K1 moves
				// his insert all the same) and revokes bob's membership.
				run(t, ann.DB, "INSERT INTO tasks (id, project_id, title) VALUES (3, 2, 'c'), (4, 2, 'd'), (5, 2, 'e')")
				run(t, ann.DB, "DELETE FROM members WHERE id = 1")
				mustSync(t, ann)

				before, pending := synctest.Dump(t, bob.DB, bob.Reg), pendingCount(t, bob)
				_, err := bob.Pull(ctx)
				var se *dbsync.ScopeError
				if !errors.As(err, &se) || !slices.Equal(se.Entries, tc.named) {
					t.Fatalf("bob's pull: %v, want a ScopeError naming %v", err, tc.named)
				}
				if d := synctest.Diff(before, synctest.Dump(t, bob.DB, bob.Reg)); d != "" || pendingCount(t, bob) != pending {
					t.Fatalf("the refused pull changed bob's rows or log:\n%s", d)
				}
				if v, err := bob.Version(ctx); err != nil || v != 1 {
					t.Fatalf("bob's version after the refused pull: %d, %v; want 1", v, err)
				}
				if err := bob.DiscardPending(ctx, se.Entries); err != nil {
					t.Fatalf("discard: %v", err)
				}
				mustSync(t, bob)
				wantKeys(t, bob, "projects")
				wantKeys(t, bob, "tasks")
				wantKeys(t, bob, "members")
				if n := pendingCount(t, bob); n != 0 {
					t.Fatalf("bob has %d pending operations, want none", n)
				}
				// Nothing of bob's reached the server.
				mustSync(t, ann)
				wantKeys(t, ann, "tasks", "1", "2", "3", "4", "5")
				var title string
				if err := srv.DB.NewRaw("SELECT title FROM tasks WHERE id = 2").Scan(ctx, &title); err != nil || title != "b" {
					t.Fatalf("server's task 2: %q, %v", title, err)
				}
			})
		}
	}
}

// scopeRulesSetup: ann owns projects 1 (tasks 1 and 2) and 2 (task 3);
// project 1 is shared with bob through member 1, and bob holds it.
func scopeRulesSetup(t *testing.T, kind string) (srv *synctest.Server, ann, bob *synctest.Client) {
	t.Helper()
	srv = newScopedServer(t, kind)
	ann, bob = scopedClient(t, srv, "ann", "phone"), scopedClient(t, srv, "bob", "phone")
	run(t, ann.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared'), (2, 'ann', 'private')")
	run(t, ann.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c')")
	run(t, ann.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
	mustSync(t, ann)
	mustSync(t, bob)
	wantKeys(t, bob, "projects", "1")
	wantKeys(t, bob, "tasks", "1", "2")
	return srv, ann, bob
}

// TestS1MoveOutNotLogged pins merge.md S1: rows that left the node's scope
// (a project, its tasks with it) are deleted by the pull without being
// logged, so no push sends their deletes: the server and the other nodes
// keep them.
func TestS1MoveOutNotLogged(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, ann, bob := scopeRulesSetup(t, kind)
			run(t, ann.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, ann)
			res, err := bob.Pull(ctx)
			if err != nil {
				t.Fatalf("bob's pull: %v", err)
			}
			if res.ScopeOut != 3 || res.ScopeIn != 0 {
				t.Fatalf("bob's pull: %d rows out, %d in; want project 1 and its 2 tasks out", res.ScopeOut, res.ScopeIn)
			}
			wantKeys(t, bob, "projects")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "members")
			if n := pendingCount(t, bob); n != 0 {
				t.Fatalf("the move-out logged %d operations on bob", n)
			}
			mustSync(t, bob)
			mustSync(t, ann)
			wantKeys(t, ann, "projects", "1", "2")
			wantKeys(t, ann, "tasks", "1", "2", "3")
			if got := keys(t, srv.DB, "tasks"); !slices.Equal(got, []string{"1", "2", "3"}) {
				t.Fatalf("server holds tasks %v, want 1, 2 and 3", got)
			}
		})
	}
}

// TestS3MoveInNotLogged pins merge.md S3: rows that entered the node's
// scope (a project shared with it, its tasks) are written by the pull,
// parents first, without being logged: the node's log holds its own
// changes only.
func TestS3MoveInNotLogged(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, ann, bob := scopeRulesSetup(t, kind)
			run(t, bob.DB, "UPDATE tasks SET title = 'by bob' WHERE id = 1")
			run(t, ann.DB, "INSERT INTO members (id, project_id, user_id) VALUES (2, 2, 'bob')")
			mustSync(t, ann)
			res, err := bob.Pull(ctx)
			if err != nil {
				t.Fatalf("bob's pull: %v", err)
			}
			if res.ScopeIn != 2 || res.ScopeOut != 0 {
				t.Fatalf("bob's pull: %d rows in, %d out; want project 2 and task 3 in", res.ScopeIn, res.ScopeOut)
			}
			wantKeys(t, bob, "projects", "1", "2")
			wantKeys(t, bob, "tasks", "1", "2", "3")
			var ops []string
			if err := bob.DB.NewRaw(`SELECT row_id || command FROM sync_operations WHERE version_id IS NULL`).Scan(ctx, &ops); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ops, []string{"1u"}) {
				t.Fatalf("bob's log after the move-in: %v, want his update of task 1 only", ops)
			}
			mustSync(t, bob)
			mustSync(t, ann)
			for _, c := range []*synctest.Client{ann, bob} {
				if d := synctest.Diff(synctest.Dump(t, srv.DB, srv.Reg), synctest.Dump(t, c.DB, c.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", c.Name, d)
				}
			}
		})
	}
}

// TestS4HeldKeys pins merge.md S4: the node tells the server the rows it
// holds as the server sent them: its rows less its unpushed inserts, plus
// its unpushed deletes. Its unpushed insert is not taken for a row that
// left the scope (which S2 would refuse), its unpushed delete not for a
// row it lacks (which the pull would write back under the pending delete):
// the pull moves nothing in or out, and the node keeps both changes.
func TestS4HeldKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, ann, bob := scopeRulesSetup(t, kind)
			run(t, bob.DB, "DELETE FROM tasks WHERE id = 2")
			run(t, bob.DB, "INSERT INTO tasks (id, project_id, title) VALUES (10, 1, 'new')")
			run(t, ann.DB, "UPDATE tasks SET title = 'a2' WHERE id = 1")
			mustSync(t, ann)
			res, err := bob.Pull(ctx)
			if err != nil {
				t.Fatalf("bob's pull: %v", err)
			}
			if res.ScopeIn != 0 || res.ScopeOut != 0 {
				t.Fatalf("bob's pull: %d rows in, %d out; want none", res.ScopeIn, res.ScopeOut)
			}
			wantKeys(t, bob, "tasks", "1", "10")
			if n := pendingCount(t, bob); n != 2 {
				t.Fatalf("bob has %d pending operations, want his delete and insert", n)
			}
			mustSync(t, bob)
			mustSync(t, ann)
			wantKeys(t, ann, "tasks", "1", "3", "10")
			if d := synctest.Diff(synctest.Dump(t, srv.DB, srv.Reg), synctest.Dump(t, ann.DB, ann.Reg)); d != "" {
				t.Fatalf("ann and the server differ:\n%s", d)
			}
			wantKeys(t, bob, "tasks", "1", "10")
		})
	}
}

// TestSyncScopeRefusalNamesAll: bob, offline, deletes a task of a project
// shared with him and creates one under it; ann edits that task and
// revokes his membership. Bob's push is behind (the task changed since
// his version) and out of scope: the server names only the row it
// refuses before its writes (the delete). Sync's refusal names every row
// of his that left the scope, the created task too (his pull used to
// stop at the first scope_out line naming rows), so that one
// DiscardPending settles it.
func TestSyncScopeRefusalNamesAll(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			ann, bob := scopedClient(t, srv, "ann", "phone"), scopedClient(t, srv, "bob", "phone")
			run(t, ann.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared')")
			run(t, ann.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b')")
			run(t, ann.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "DELETE FROM tasks WHERE id = 2")
			run(t, bob.DB, "INSERT INTO tasks (id, project_id, title) VALUES (3, 1, 'new')")
			run(t, ann.DB, "UPDATE tasks SET title = 'edited' WHERE id = 2")
			run(t, ann.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, ann)

			_, err := bob.Sync(ctx)
			want := []protocol.ScopeEntry{{Table: "tasks", PK: "2"}, {Table: "tasks", PK: "3"}}
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || !slices.Equal(se.Entries, want) {
				t.Fatalf("bob's sync: %v, want a ScopeError naming %v", err, want)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatalf("discard: %v", err)
			}
			mustSync(t, bob)
			if n := pendingCount(t, bob); n != 0 {
				t.Fatalf("bob has %d pending operations, want none", n)
			}
			wantKeys(t, bob, "projects")
			wantKeys(t, bob, "tasks")
		})
	}
}
