package e2e_test

// The log's lifecycle (trim, reset), partial sync (scopes: move-out,
// move-in, ownership given away) and schema changes (an old node on a
// newer server) met together, as a production node offline across a trim
// meets them.

import (
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
)

func TestTrimScopeCombinations(t *testing.T) {
	cases := []struct {
		name string
		v2   bool
		run  func(e *h5Env)
	}{
		{
			// Bob's access to project 10 is revoked and granted again
			// while he is offline past the horizon: his pending changes in
			// it are in scope again at his reset, and go through.
			name: "moveout-trim-movein",
			run: func(e *h5Env) {
				h5Share(e)
				e.exec(e.bob,
					"UPDATE stuck_tasks SET title = 'bob' WHERE id = 101",
					"INSERT INTO stuck_tasks (id, project_id, title) VALUES (102, 10, 'bob new')")
				e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
				e.sync(e.ann)
				e.exec(e.ann, "UPDATE stuck_projects SET name = 'ann10b' WHERE id = 10")
				e.sync(e.ann)
				e.trimPast()
				e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
				e.sync(e.ann)
				e.settle(e.bob, "bob")
				if n := e.count(e.srv.DB, "SELECT count(*) FROM stuck_tasks WHERE title IN ('bob', 'bob new')"); n != 2 {
					e.t.Errorf("server holds %d of bob's 2 tasks", n)
				}
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann")
			},
		},
		{
			// Bob creates a task in project 10; ann revokes his access,
			// and he is offline past the horizon, while ann renames the
			// project. His sync is refused (the task's project left his
			// scope); he waits, and ann shares the project again. His
			// next sync must not write his old copy of the project over
			// ann's rename: before, the reset kept the project for his
			// task (D1) as a re-creation, refused by the push until the
			// project came back into his scope, then written over it.
			name: "moveout-trim-regrant-child",
			run: func(e *h5Env) {
				h5Share(e)
				e.exec(e.bob, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (102, 10, 'bob new')")
				e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
				e.sync(e.ann)
				e.trimPast()
				e.exec(e.ann, "UPDATE stuck_projects SET name = 'ann10b' WHERE id = 10")
				e.sync(e.ann)
				_, err := e.bob.Sync(e.ctx)
				var se *dbsync.ScopeError
				if !errors.As(err, &se) {
					e.t.Fatalf("bob's sync: %v, want a *dbsync.ScopeError", err)
				}
				e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
				e.sync(e.ann)
				e.settle(e.bob, "bob")
				var name string
				if err := e.srv.DB.NewRaw("SELECT name FROM stuck_projects WHERE id = 10").Scan(e.ctx, &name); err != nil || name != "ann10b" {
					e.t.Errorf("server's project 10 is named %q (%v), want ann's rename ann10b", name, err)
				}
				if n := e.count(e.srv.DB, "SELECT count(*) FROM stuck_tasks WHERE project_id = 10 AND title = 'bob new'"); n != 1 {
					e.t.Errorf("server holds %d of bob's task 102", n)
				}
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann")
			},
		},
		{
			// Bob's node stays on release 1 against a release 2 server;
			// one shared project is revoked while he is offline past the
			// horizon: his reset keeps his change to the other, whose push
			// leaves ann's note as it is.
			name: "old-node-revoked-trim",
			v2:   true,
			run: func(e *h5Env) {
				h5Share2(e)
				e.exec(e.bob, "UPDATE stuck_tasks SET title = 'bob' WHERE id IN (100, 110)")
				e.exec(e.ann,
					"UPDATE stuck_tasks SET note = 'ann' WHERE id IN (100, 110)",
					"DELETE FROM stuck_members WHERE id = 1001")
				e.sync(e.ann)
				e.trimPast()
				e.settle(e.bob, "bob")
				var note, title string
				if err := e.srv.DB.NewRaw("SELECT note, title FROM stuck_tasks WHERE id = 100").Scan(e.ctx, &note, &title); err != nil ||
					note != "ann" || title != "bob" {
					e.t.Errorf("server's task 100: note %q title %q %v, want ann's note and bob's title", note, title, err)
				}
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann")
			},
		},
		{
			// Bob, behind the trim, repairs (dropping nothing: no pending
			// change) and then holds the log back: a trim right after
			// leaves him live, and his next sync does not reset.
			name: "repair-after-trim",
			run: func(e *h5Env) {
				h5Share(e)
				e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
				e.sync(e.ann)
				e.trimPast()
				if _, err := e.bob.Repair(e.ctx, nil); err != nil {
					e.t.Fatal(err)
				}
				e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
				e.sync(e.ann)
				if _, err := e.srv.Srv.Trim(e.ctx); err != nil {
					e.t.Fatal(err)
				}
				res, err := e.bob.Sync(e.ctx)
				if err != nil {
					e.t.Fatal(err)
				}
				if res.Reset != nil {
					e.t.Errorf("bob reset after his repair: %+v", res.Reset)
				}
				e.settle(e.bob, "bob")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h5Run(t, tc.v2, map[string]*client.Config{"default": nil}, tc.run)
		})
	}
}
