package e2e_test

// The log's lifecycle (trim, reset), partial sync (scopes: move-out,
// move-in, ownership given away) and schema changes (an old node on a
// newer server) met together, as a production node offline across a trim
// meets them.

import (
	"errors"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
)

func TestTrimScopeCombinations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		v2   bool
		cfg  *client.Config
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
				h5rWantTask(e, 100)
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann")
			},
		},
		{
			// Bob's node of release 1, on a release 2 server, deletes a
			// task that has comments (a table it does not know) and
			// changes another, offline past the horizon; under
			// merge.ClientWins his reset keeps the delete, which the
			// server refuses (E1): he gives it up.
			name: "old-node-delete-referenced-trim",
			v2:   true,
			cfg:  &client.Config{DefaultPolicy: merge.ClientWins},
			run: func(e *h5Env) {
				h5Share2(e)
				e.exec(e.bob,
					"DELETE FROM stuck_tasks WHERE id = 100",
					"UPDATE stuck_tasks SET title = 'bob' WHERE id = 110")
				e.exec(e.ann, "UPDATE stuck_tasks SET note = 'ann' WHERE id IN (100, 110)")
				e.sync(e.ann)
				e.trimPast()
				e.settle(e.bob, "bob")
				if n := e.count(e.srv.DB, "SELECT count(*) FROM stuck_comments WHERE task_id = 100"); n != 1 {
					e.t.Errorf("server holds %d comments of task 100, want 1", n)
				}
				h5rWantTask(e, 110)
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann")
			},
		},
		{
			// Bob's second device moves task 101 from ann's project 10
			// into his own project 20 while his phone, offline past the
			// horizon, changes its title; ann stops sharing project 10.
			// The phone's reset meets the task in his own project.
			name: "moved-by-other-device-trim",
			run: func(e *h5Env) {
				h5Share(e)
				laptop := synctest.NewClientAs(e.t, e.srv, "bob/laptop", "Bearer bob",
					synctest.ClientDB(e.t, e.kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), e.cfg)
				e.sync(laptop)
				e.exec(e.bob, "UPDATE stuck_tasks SET title = 'phone' WHERE id = 101")
				e.exec(laptop,
					"INSERT INTO stuck_projects (id, owner_id, name) VALUES (20, 'bob', 'bob20')",
					"UPDATE stuck_tasks SET project_id = 20 WHERE id = 101")
				e.sync(laptop)
				e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
				e.sync(e.ann)
				e.trimPast()
				e.sync(laptop)
				e.settle(e.bob, "bob")
				e.settle(laptop, "bob")
				if d := synctest.Diff(synctest.Dump(e.t, laptop.DB, laptop.Reg), synctest.Dump(e.t, e.bob.DB, laptop.Reg)); d != "" {
					e.t.Errorf("bob's devices differ:\n%s", d)
				}
			},
		},
		{
			// Bob's laptop deletes his own project 20 while his phone,
			// offline past the horizon, adds a task to it. The phone's
			// reset cannot tell the project deleted from moved out of
			// his scope: it is refused naming both rows, nothing
			// applied; he gives the task up and syncs.
			name: "own-parent-deleted-trim",
			run: func(e *h5Env) {
				laptop := synctest.NewClientAs(e.t, e.srv, "bob/laptop", "Bearer bob",
					synctest.ClientDB(e.t, e.kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), e.cfg)
				e.exec(e.bob, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (20, 'bob', 'bob20')")
				e.sync(e.bob)
				e.sync(laptop)
				e.exec(e.bob, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (200, 20, 'phone')")
				e.exec(laptop, "DELETE FROM stuck_projects WHERE id = 20")
				e.sync(laptop)
				e.trimPast()
				_, err := e.bob.Sync(e.ctx)
				var se *dbsync.ScopeError
				if !errors.As(err, &se) || !errors.Is(err, dbsync.ErrPendingChanges) {
					e.t.Fatalf("bob's sync: %v, want dbsync.ErrPendingChanges with a *dbsync.ScopeError", err)
				}
				if got := fmt.Sprint(se.Entries); got != "[{stuck_projects 20} {stuck_tasks 200}]" {
					e.t.Errorf("the refusal names %s, want project 20 and task 200", got)
				}
				if n := e.count(e.bob.DB, "SELECT count(*) FROM stuck_projects WHERE id = 20"); n != 1 {
					e.t.Errorf("the refused reset applied its deletes: bob holds %d of project 20", n)
				}
				if err := e.bob.DiscardPending(e.ctx, se.Entries); err != nil {
					e.t.Fatal(err)
				}
				e.settle(e.bob, "bob")
				e.settle(laptop, "bob")
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
			h5Run(t, tc.v2, map[string]*client.Config{"default": tc.cfg}, tc.run)
		})
	}
}

// h5rWantTask: the server's task id holds ann's note and bob's title.
func h5rWantTask(e *h5Env, id int) {
	e.t.Helper()
	var note, title string
	if err := e.srv.DB.NewRaw("SELECT note, title FROM stuck_tasks WHERE id = ?", id).Scan(e.ctx, &note, &title); err != nil ||
		note != "ann" || title != "bob" {
		e.t.Errorf("server's task %d: note %q title %q %v, want ann's note and bob's title", id, note, title, err)
	}
}
