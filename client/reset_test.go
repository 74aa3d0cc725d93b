package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/server"
)

// TestResetSettlesLostPush: a node pushes integer-keyed inserts and loses
// the answer (applied) or the request (not applied), goes silent past the
// horizon, and the server trims below it. Its reset asks the server about
// that push: applied, its rows are not pushed again under new keys (K1
// would otherwise move them and the server would hold them twice); not
// applied, they are pushed once. Sync settles it by resending the push
// (the server keeps each node's latest push through the trim); Reset
// called first asks the server (push-status).
func TestResetSettlesLostPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, mode := range []string{"applied", "not-applied", "applied/reset", "not-applied/reset"} {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				// The server's clock moves a day ahead; requests are signed
				// with the real time.
				srv := synctest.NewTemplateServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
				tr := &transport{}
				a := synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client()})
				b := synctest.NewTemplateClient(t, srv, "b", nil)
				list := insertList(t, a.DB, "a's")
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				insertTodos(t, a.DB, list, "a", 2)
				applied, explicit := strings.CutSuffix(mode, "/reset")
				if applied == "applied" {
					tr.setHook(loseReply("push"))
				} else {
					tr.setHook(failBefore("push"))
				}
				if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("push with a lost %s: %v", mode, err)
				}
				tr.setHook(nil)
				// b goes on and stays live; a falls behind the trim.
				insertTodos(t, b.DB, list, "b", 2)
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Advance(25 * time.Hour)
				insertList(t, b.DB, "b's")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if res, err := srv.Srv.Trim(ctx); err != nil || res.RetiredNodes != 1 {
					t.Fatalf("trim: %+v %v, want a retired", res, err)
				}
				if explicit {
					// Reset before any push: the lost push is settled by
					// asking the server, not by resending it.
					if _, err := a.Reset(ctx); err != nil {
						t.Fatalf("a reset: %v", err)
					}
				}
				res, err := a.Sync(ctx)
				if err != nil || (res.Reset == nil) != explicit {
					t.Fatalf("a sync: %v %v, want a reset unless a reset first", res, err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if n := count(t, srv.DB, "todos", "title LIKE 'a-%'"); n != 2 {
					t.Fatalf("the server holds %d of a's 2 todos: %v", n, titles(t, srv.DB))
				}
				converged(t, srv, a, b)
			})
		}
	}
}

// trimConfig is a server configuration whose clock clk moves, and whose
// horizon is a day: a node silent for 25 hours is retired by the trim.
func trimConfig(clk *dbtest.Clock) *server.Config {
	return &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
}

// scopedBehindTrim starts a server with scopes (synctest.ScopeRules) and
// a trimConfig, and the nodes of alice and bob, on kind databases.
func scopedBehindTrim(t *testing.T, kind string) (srv *synctest.Server, clk *dbtest.Clock, alice, bob *synctest.Client) {
	t.Helper()
	clk = dbtest.NewClock(time.Now())
	cfg := trimConfig(clk)
	cfg.AuthorizeRegister, cfg.Scopes = synctest.BearerUser, synctest.ScopeRules()
	srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, "scoped", testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(), cfg)
	alice = synctest.NewClientAs(t, srv, "alice", "Bearer alice", synctest.ClientDB(t, kind, "scoped", testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(), nil)
	bob = synctest.NewClientAs(t, srv, "bob", "Bearer bob", synctest.ClientDB(t, kind, "scoped", testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(), nil)
	return srv, clk, alice, bob
}

// behindTrim moves srv's clock past its horizon, has b push twice after
// it (b stays live), and trims: the node a that did not sync is retired
// and left below the floor.
func behindTrim(t *testing.T, srv *synctest.Server, clk *dbtest.Clock, b *synctest.Client, write string) {
	t.Helper()
	ctx := context.Background()
	clk.Advance(25 * time.Hour)
	exec(t, b.DB, write)
	for range 2 {
		if _, err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := srv.Srv.Trim(ctx); err != nil || res.RetiredNodes != 1 {
		t.Fatalf("trim: %+v %v, want one node retired", res, err)
	}
}

// TestResetGoneRowsPaged: the rows a node holds that the server no longer
// has are found by the database and merged a page at a time (pages of 2
// keys here): every one is deleted across the pages, children's pages
// first, except those the node's pending changes keep (its insert; its
// update of a deleted list, M5), and its deletes of rows the server
// deleted too settle (M6).
func TestResetGoneRowsPaged(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			srv := synctest.NewServer(t, kind, trimConfig(clk))
			var pages []int64
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models()), testmodels.CreateSchema, synctest.Models(),
				&client.Config{OnProgress: func(p dbsync.Progress) {
					if p.Op == "reset" && p.Phase == "gone" {
						pages = append(pages, p.Rows)
					}
				}})
			client.SetResetPage(a.Client, 2)
			b := synctest.NewClient(t, srv, "b", nil)
			lists := map[string]int64{}
			for _, name := range []string{"l0", "l1", "l2", "l3", "l4", "l5"} {
				lists[name] = insertList(t, b.DB, name)
				insertTodos(t, b.DB, lists[name], name, 2)
			}
			for _, n := range []*synctest.Client{b, a} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// a, offline: an update of a list b deletes, a delete b makes
			// too, an insert.
			exec(t, a.DB, "UPDATE lists SET name = 'l1-a' WHERE id = ?", lists["l1"])
			exec(t, a.DB, "DELETE FROM todos WHERE list_id = ?", lists["l2"])
			exec(t, a.DB, "DELETE FROM lists WHERE id = ?", lists["l2"])
			insertTodos(t, a.DB, insertList(t, a.DB, "new-a"), "new-a", 1)
			// b deletes lists l1 to l4 and their todos.
			exec(t, b.DB, "DELETE FROM todos WHERE list_id IN (?, ?, ?, ?)", lists["l1"], lists["l2"], lists["l3"], lists["l4"])
			exec(t, b.DB, "DELETE FROM lists WHERE id IN (?, ?, ?, ?)", lists["l1"], lists["l2"], lists["l3"], lists["l4"])
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			behindTrim(t, srv, clk, b, "UPDATE lists SET name = 'l0-b' WHERE name = 'l0'")

			res, err := a.Sync(ctx)
			if err != nil || res.Reset == nil {
				t.Fatalf("a sync: %v %v, want a reset", res, err)
			}
			// Not on the server: the todos of l1, l3, l4 and a's new todo
			// (4 pages), lists l1, l3, l4 and a's new list (2 pages); l2
			// and its todos a deleted itself. a's inserts and its update
			// are kept, its deletes settle.
			if len(pages) != 6 {
				t.Errorf("%d pages of rows the server no longer has, want 6", len(pages))
			}
			if res.Reset.Pending != 6 || res.Reset.Kept != 3 {
				t.Errorf("reset kept %d of %d pending rows, want 3 of 6", res.Reset.Kept, res.Reset.Pending)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			converged(t, srv, a, b)
			var names []string
			if err := srv.DB.NewSelect().Table("lists").Column("name").Order("name").Scan(ctx, &names); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names, " "); got != "l0-b l1-a l5 new-a" {
				t.Errorf("server's lists: %s", got)
			}
			if got := strings.Join(titles(t, srv.DB), " "); got != "l0-0 l0-1 l5-0 l5-1 new-a-0" {
				t.Errorf("server's todos: %s", got)
			}
		})
	}
}

// TestResetScoped: on a server with scopes, a node the trim left behind
// resets: it receives only the rows of its scope (its project and the
// project shared with it since, not another user's), the rows that left
// its scope (a project no longer shared) are deleted, and its pending
// changes within its scope meet the server's rows as in any reset (its
// update and insert kept, its delete undone by M4: merge.md T7).
func TestResetScoped(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, clk, a, b := scopedBehindTrim(t, kind)
			exec(t, a.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'alice', 'hers')")
			exec(t, a.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 't1'), (2, 1, 't2')")
			syncOK(t, a.Client)
			exec(t, b.DB, "INSERT INTO projects (id, owner_id, name) VALUES (2, 'bob', 'his')")
			exec(t, b.DB, "INSERT INTO tasks (id, project_id, title) VALUES (3, 2, 'his task')")
			exec(t, b.DB, "INSERT INTO members (id, project_id, user_id) VALUES (2, 2, 'alice')")
			syncOK(t, b.Client)
			syncOK(t, a.Client)
			if n := count(t, a.DB, "tasks", "project_id = 2"); n != 1 {
				t.Fatalf("alice holds %d tasks of the project bob shares, want 1", n)
			}

			// alice, offline: an update, a delete and an insert in her
			// project.
			exec(t, a.DB, "UPDATE tasks SET title = 't1-a' WHERE id = 1")
			exec(t, a.DB, "DELETE FROM tasks WHERE id = 2")
			exec(t, a.DB, "INSERT INTO tasks (id, project_id, title) VALUES (10, 1, 't10-a')")
			// bob stops sharing his project with her, shares a new one.
			exec(t, b.DB, "DELETE FROM members WHERE id = 2")
			exec(t, b.DB, "INSERT INTO projects (id, owner_id, name) VALUES (3, 'bob', 'shared')")
			exec(t, b.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 3, 'alice')")
			exec(t, b.DB, "INSERT INTO tasks (id, project_id, title) VALUES (4, 3, 'shared task'), (5, 2, 'his second')")
			syncOK(t, b.Client)
			behindTrim(t, srv, clk, b, "UPDATE projects SET name = 'his, renamed' WHERE id = 2")

			res, err := a.Sync(ctx)
			if err != nil || res.Reset == nil || res.Reset.Pending != 3 || res.Reset.Kept != 2 {
				t.Fatalf("alice's sync: %v %v, want a reset keeping 2 of her 3 pending rows", res, err)
			}
			for _, c := range []struct {
				db      *bun.DB
				q, want string
			}{
				{a.DB, "SELECT name FROM projects ORDER BY id", "hers shared"},
				{a.DB, "SELECT CAST(project_id AS TEXT) || '/' || user_id FROM members ORDER BY id", "3/alice"},
				{a.DB, "SELECT title FROM tasks ORDER BY id", "t1-a t2 shared task t10-a"},
				{srv.DB, "SELECT title FROM tasks ORDER BY id", "t1-a t2 his task shared task his second t10-a"},
			} {
				var got []string
				if err := c.db.NewRaw(c.q).Scan(ctx, &got); err != nil {
					t.Fatal(err)
				}
				if g := strings.Join(got, " "); g != c.want {
					t.Errorf("%s: %q, want %q", c.q, g, c.want)
				}
			}
			if res := syncOK(t, a.Client); res.Changed() {
				t.Errorf("alice's next sync changed something: %v", res)
			}
		})
	}
}

// TestResetScopedLeft: a node's pending update of a row that left its
// scope while the trim left it behind references a parent that left with
// it: the reset does not re-create the parent (D1 keeps no row of a table
// held in part), it is refused with a *dbsync.ScopeError naming both;
// DiscardPending gives them up and the next sync removes them (merge.md
// T7).
func TestResetScopedLeft(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, clk, a, b := scopedBehindTrim(t, kind)
			exec(t, b.DB, "INSERT INTO projects (id, owner_id, name) VALUES (2, 'bob', 'his')")
			exec(t, b.DB, "INSERT INTO tasks (id, project_id, title) VALUES (3, 2, 'his task')")
			exec(t, b.DB, "INSERT INTO members (id, project_id, user_id) VALUES (2, 2, 'alice')")
			syncOK(t, b.Client)
			syncOK(t, a.Client)
			exec(t, a.DB, "UPDATE tasks SET title = 'his task, edited by alice' WHERE id = 3")
			exec(t, b.DB, "DELETE FROM members WHERE id = 2")
			syncOK(t, b.Client)
			behindTrim(t, srv, clk, b, "UPDATE projects SET name = 'his, renamed' WHERE id = 2")

			_, err := a.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) {
				t.Fatalf("alice's sync: %v, want a *dbsync.ScopeError", err)
			}
			var named []string
			for _, e := range se.Entries {
				named = append(named, e.Table+"/"+e.PK)
			}
			if got := strings.Join(named, " "); got != "projects/2 tasks/3" {
				t.Fatalf("the scope error names %s, want projects/2 tasks/3", got)
			}
			if err := a.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			syncOK(t, a.Client)
			if n := count(t, a.DB, "projects", "id = 2") + count(t, a.DB, "tasks", "id = 3"); n != 0 {
				t.Fatalf("alice still holds %d rows of the project no longer shared", n)
			}
			var title string
			if err := srv.DB.NewRaw("SELECT title FROM tasks WHERE id = 3").Scan(ctx, &title); err != nil || title != "his task" {
				t.Fatalf("server's task 3: %q %v", title, err)
			}
		})
	}
}

// TestWatchResetsBehindTrim: a node kept in sync by Watch alone, with
// nothing to push, is reset when the server's log floor left it behind:
// a node retired by the trim, and a new node once the log was ever
// trimmed. (Watch's catch-up is a Pull then, and Pull does not reset: it
// retried for ever.)
func TestWatchResetsBehindTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, newNode := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/new=%v", kind, newNode), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				srv := synctest.NewServer(t, kind, trimConfig(clk))
				a := synctest.NewClient(t, srv, "a", nil)
				b := synctest.NewClient(t, srv, "b", nil)
				insertList(t, b.DB, "before")
				for _, c := range []*synctest.Client{b, a} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				behindTrim(t, srv, clk, b, "INSERT INTO lists (name) VALUES ('after the trim')")
				if newNode {
					a = synctest.NewClient(t, srv, "c", nil)
				}
				wctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() {
					done <- a.Watch(wctx, &client.WatchOptions{Wait: time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
				}()
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && count(t, a.DB, "lists", "name = 'after the trim'") == 0; {
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					t.Fatalf("watch: %v", err)
				}
				if n := count(t, a.DB, "lists", ""); n != 2 {
					_, perr := a.Pull(ctx)
					t.Fatalf("the watching node holds %d lists, want 2 (its pull: %v)", n, perr)
				}
			})
		}
	}
}

// TestResetD1AfterServerWinsPaged: the reset counterpart of
// TestD1AfterServerWins (internal/e2e), in a table referencing itself. b
// deletes node 1 and its child node 2, which a changed; a, left behind
// the trim, resets under merge.ServerWins with pages of one key: node
// 1's delete comes in the page before node 2's. Node 2's delete drops
// a's change (M5), and nothing depends on node 1 any more: D1, deciding
// at the end of the reset, must not keep it (it did, at the end of its
// page, and a's next push re-created it on the server).
func TestResetD1AfterServerWinsPaged(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			models := testmodels.Nodes()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "nodes", testmodels.CreateNodes, models), testmodels.CreateNodes, models, trimConfig(clk))
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "nodes", testmodels.CreateNodes, models), testmodels.CreateNodes, models,
				&client.Config{DefaultPolicy: merge.ServerWins})
			client.SetResetPage(a.Client, 1)
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "nodes", testmodels.CreateNodes, models), testmodels.CreateNodes, models, nil)
			exec(t, b.DB, "INSERT INTO tree_nodes (id, parent_id, name) VALUES (1, NULL, 'n1'), (2, 1, 'n2'), (3, NULL, 'n3')")
			for _, n := range []*synctest.Client{b, a} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			exec(t, a.DB, "UPDATE tree_nodes SET name = 'n2-a' WHERE id = 2")
			exec(t, b.DB, "DELETE FROM tree_nodes WHERE id IN (1, 2)")
			behindTrim(t, srv, clk, b, "UPDATE tree_nodes SET name = 'n3-b' WHERE id = 3")

			res, err := a.Sync(ctx)
			if err != nil || res.Reset == nil {
				t.Fatalf("a sync: %v %v, want a reset", res, err)
			}
			if res.Reset.Kept != 0 || res.Reset.Conflicts[merge.KindDependency] != 0 || res.Reset.Conflicts[merge.KindDeleteUpdate] != 1 {
				t.Errorf("reset kept %d of %d pending rows, conflicts %v; want none kept, one delete_update", res.Reset.Kept, res.Reset.Pending, res.Reset.Conflicts)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for name, db := range map[string]bun.IDB{"server": srv.DB, "a": a.DB, "b": b.DB} {
				var names []string
				if err := db.NewSelect().Table("tree_nodes").Column("name").Order("name").Scan(ctx, &names); err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(names, " "); got != "n3-b" {
					t.Errorf("%s's nodes: %s, want n3-b", name, got)
				}
			}
		})
	}
}
