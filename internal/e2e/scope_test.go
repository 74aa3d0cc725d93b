package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

func newScopedServer(t *testing.T, kind string) *synctest.Server {
	t.Helper()
	return synctest.NewServerWith(t, scopedServerDB(t, kind), testmodels.CreateScoped, testmodels.Scoped(),
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()})
}

// scopedServerDB opens a server's database of kind for the scoped models
// (SQLite: a copy of a template on which server.New installed them).
func scopedServerDB(t *testing.T, kind string) *bun.DB {
	t.Helper()
	if kind == dbtest.KindSQLite {
		return synctest.ServerSQLite(t, "scoped", testmodels.CreateScoped, testmodels.Scoped())
	}
	return dbtest.Open(t, kind)
}

// scopedClientDB opens a node's SQLite file for the scoped models, a copy
// of a template on which client.New installed them.
func scopedClientDB(t *testing.T) *bun.DB {
	t.Helper()
	return synctest.ClientSQLite(t, "scoped", testmodels.CreateScoped, testmodels.Scoped())
}

func scopedClient(t *testing.T, srv *synctest.Server, user, device string) *synctest.Client {
	t.Helper()
	return scopedClientWith(t, srv, user, device, nil)
}

func scopedClientWith(t *testing.T, srv *synctest.Server, user, device string, cfg *client.Config) *synctest.Client {
	t.Helper()
	return synctest.NewClientAs(t, srv, user+"/"+device, "Bearer "+user, scopedClientDB(t), testmodels.CreateScoped, testmodels.Scoped(), cfg)
}

// keys lists a table's keys on a database, in order.
func keys(t *testing.T, db bun.IDB, table string) []string {
	t.Helper()
	var out []string
	if err := db.NewRaw("SELECT CAST(id AS TEXT) FROM ? ORDER BY id", bun.Ident(table)).Scan(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSync(t *testing.T, c *synctest.Client) {
	t.Helper()
	if _, err := c.Sync(context.Background()); err != nil {
		t.Fatalf("%s sync: %v", c.Name, err)
	}
}

func run(t *testing.T, db bun.IDB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func wantKeys(t *testing.T, c *synctest.Client, table string, want ...string) {
	t.Helper()
	if got := keys(t, c.DB, table); !slices.Equal(got, want) {
		t.Fatalf("%s holds %s %v, want %v", c.Name, table, got, want)
	}
}

// pendingCount counts a node's unpushed operations.
func pendingCount(t *testing.T, c *synctest.Client) int {
	t.Helper()
	n, err := c.DB.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestScopeMoveInMoveOut: over HTTP, on both dialects, nodes of two users
// hold only their scope: a principal's devices share it; rows enter a
// node's scope at its next pull (membership granted, ownership changed on
// the server) and leave it (membership revoked, ownership changed, the
// principal removed), children with them, without being logged as local
// deletes; pending local changes to a row that left are refused with a
// *dbsync.ScopeError naming them, and the pull is not applied; writes
// outside the scope are refused with one.
func TestScopeMoveInMoveOut(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			run(t, srv.DB, "INSERT INTO tags (id, name) VALUES (1, 'urgent')")
			ann1, ann2, bob := scopedClient(t, srv, "ann", "phone"), scopedClient(t, srv, "ann", "laptop"), scopedClient(t, srv, "bob", "phone")

			run(t, ann1.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared'), (2, 'ann', 'private')")
			run(t, ann1.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'secret')")
			run(t, bob.DB, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'bob', 'bob''s')")
			mustSync(t, ann1)
			mustSync(t, bob)
			mustSync(t, ann2)
			wantKeys(t, ann2, "projects", "1", "2")
			wantKeys(t, ann2, "tasks", "1", "2", "3")
			mustSync(t, bob)
			wantKeys(t, bob, "projects", "10")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "tags", "1")

			// Move-in: ann shares project 1 with bob.
			run(t, ann1.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
			mustSync(t, ann1)
			res, err := bob.Pull(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Project 1 and tasks 1 and 2 move in; member 1 is new in the
			// pulled version and comes as its operation.
			if res.ScopeIn != 3 || res.ScopeOut != 0 {
				t.Fatalf("bob's pull: %d rows in, %d out, want 3 and 0", res.ScopeIn, res.ScopeOut)
			}
			wantKeys(t, bob, "projects", "1", "10")
			wantKeys(t, bob, "tasks", "1", "2")
			wantKeys(t, bob, "members", "1")

			// Repair and query read the same scope.
			if _, err := bob.Repair(ctx, nil); err != nil {
				t.Fatalf("bob repair: %v", err)
			}
			wantKeys(t, bob, "projects", "1", "10")
			wantKeys(t, bob, "tasks", "1", "2")
			wantKeys(t, bob, "tags", "1")
			q, err := bob.Query(ctx, &protocol.QueryRequest{Table: "tasks"})
			if err != nil || len(q.Rows) != 2 {
				t.Fatalf("bob queries tasks: %d rows, %v; want 2", len(q.Rows), err)
			}

			// Bob edits the shared project; ann's devices get it.
			run(t, bob.DB, "UPDATE tasks SET title = 'by bob' WHERE id = 1")
			mustSync(t, bob)
			mustSync(t, ann2)
			var title string
			if err := ann2.DB.NewRaw("SELECT title FROM tasks WHERE id = 1").Scan(ctx, &title); err != nil || title != "by bob" {
				t.Fatalf("ann2 task 1: %q %v", title, err)
			}

			// A write outside bob's scope is refused by the server (403).
			run(t, bob.DB, "UPDATE tags SET name = 'mine' WHERE id = 1")
			_, err = bob.Push(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "tags", PK: "1"}) {
				t.Fatalf("bob pushes a tag: %v, want a ScopeError naming tags 1", err)
			}
			run(t, bob.DB, "UPDATE tags SET name = 'urgent' WHERE id = 1")
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}

			// Move-out: ann revokes the membership; bob's copies go, not
			// logged as his deletes.
			run(t, ann1.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, ann1)
			mustSync(t, bob)
			wantKeys(t, bob, "projects", "10")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "members")
			if n := pendingCount(t, bob); n != 0 {
				t.Fatalf("bob logged %d operations for rows that left his scope", n)
			}

			// Pending changes to a row that leaves: refused, nothing lost.
			run(t, ann1.DB, "INSERT INTO members (id, project_id, user_id) VALUES (2, 1, 'bob')")
			mustSync(t, ann1)
			mustSync(t, bob)
			wantKeys(t, bob, "tasks", "1", "2")
			run(t, bob.DB, "UPDATE tasks SET title = 'offline edit' WHERE id = 2")
			run(t, ann1.DB, "DELETE FROM members WHERE id = 2")
			mustSync(t, ann1)
			_, err = bob.Pull(ctx)
			if !errors.As(err, &se) || !slices.Contains(se.Entries, protocol.ScopeEntry{Table: "tasks", PK: "2"}) {
				t.Fatalf("bob's pull with a pending change to a row that left: %v, want a ScopeError naming tasks 2", err)
			}
			wantKeys(t, bob, "tasks", "1", "2")
			if err := bob.DB.NewRaw("SELECT title FROM tasks WHERE id = 2").Scan(ctx, &title); err != nil || title != "offline edit" {
				t.Fatalf("bob's pending edit: %q %v", title, err)
			}
			// Bob gives the edit up: the next pull moves the rows out.
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			mustSync(t, bob)
			wantKeys(t, bob, "tasks")

			// Ownership changed on the server: project 2 moves from ann to
			// bob, with its task.
			run(t, srv.DB, "UPDATE projects SET owner_id = 'bob' WHERE id = 2")
			mustSync(t, bob)
			mustSync(t, ann2)
			wantKeys(t, bob, "projects", "2", "10")
			wantKeys(t, bob, "tasks", "3")
			wantKeys(t, ann2, "projects", "1")
			wantKeys(t, ann2, "tasks", "1", "2")
			if n := pendingCount(t, ann2); n != 0 {
				t.Fatalf("ann2 logged %d operations for rows that left her scope", n)
			}

			// The principal removed: bob's node loses its user; at its next
			// pull (no new version) everything scoped leaves.
			run(t, srv.DB, "UPDATE sync_nodes SET registry_user_id = NULL WHERE node_id = ?", nodeID(t, bob))
			mustSync(t, bob)
			wantKeys(t, bob, "projects")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "tags", "1")

			// Every node equals the server's rows in its scope.
			mustSync(t, ann1)
			for _, c := range []*synctest.Client{ann1, ann2} {
				wantKeys(t, c, "projects", "1")
				wantKeys(t, c, "tasks", "1", "2")
			}
		})
	}
}

func nodeID(t *testing.T, c *synctest.Client) int64 {
	t.Helper()
	id, err := c.NodeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestScopeConvergence: three users, one with two devices, each node on
// one of two servers sharing a database, make random changes offline (projects, tasks, sharing and unsharing) and sync in
// random order; a node whose pending changes hit rows that left its scope
// gives them up (DiscardPending) and syncs again; some nodes stay offline
// for a round, and the server trims its log after some rounds (a node
// that missed a round before a trim resets, merge.md T7). The server's application
// writes too (direct writes): a project given to another owner leaves
// one user's scope and enters another's. At the end every node holds
// exactly the server's rows in its user's scope. Over HTTP, both
// dialects; with DBSYNC_LONG=1 more rounds, whose nodes sync at the same
// time.
func TestScopeConvergence(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(*convergenceSeedOr(20261203), 19))
			// A round is an hour: a node silent for a round is retired
			// by a trim after it, and resets at its next sync.
			clk := dbtest.NewClock(time.Now())
			scfg := &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules(), Now: clk.Now, NodeHorizon: 30 * time.Minute}
			srv := synctest.NewServerWith(t, scopedServerDB(t, kind), testmodels.CreateScoped, testmodels.Scoped(), scfg)
			// A second server on the same database: nodes alternate
			// between them, as between server processes.
			srv2 := synctest.NewServerWith(t, srv.DB, testmodels.CreateScoped, testmodels.Scoped(), scfg)
			users := []string{"ann", "bob", "cid"}
			var nodes []*synctest.Client
			owner := map[*synctest.Client]string{}
			for i, u := range append(users, "ann") {
				c := scopedClientWith(t, []*synctest.Server{srv, srv2}[i%2], u, strconv.Itoa(i), &client.Config{Now: clk.Now})
				nodes = append(nodes, c)
				owner[c] = u
			}
			var in, out, discards, resets atomic.Int64
			// trySync syncs c, giving up the pending changes a scope error
			// names; with concurrent syncs another node may push first
			// (ErrPullNeeded): it syncs again.
			trySync := func(c *synctest.Client) error {
				scoped, behind := 0, 0
				for {
					res, err := c.Sync(ctx)
					if res != nil {
						for _, p := range res.Pulls {
							in.Add(p.ScopeIn)
							out.Add(p.ScopeOut)
						}
						if res.Reset != nil {
							resets.Add(1)
						}
					}
					var se *dbsync.ScopeError
					switch {
					case err == nil:
						return nil
					case errors.As(err, &se) && scoped < 3:
						scoped++
						discards.Add(1)
						if err := c.DiscardPending(ctx, se.Entries); err != nil {
							return err
						}
					case errors.Is(err, dbsync.ErrPullNeeded) && behind < 50:
						behind++
					case se != nil:
						return fmt.Errorf("%s: still out of scope after giving changes up: %w", c.Name, err)
					default:
						return fmt.Errorf("%s sync: %w", c.Name, err)
					}
				}
			}
			syncOne := func(c *synctest.Client) {
				t.Helper()
				if err := trySync(c); err != nil {
					t.Fatal(err)
				}
			}
			rounds := dbtest.Size(3, 6, 30)
			for range rounds {
				for _, c := range nodes {
					u := owner[c]
					for range rng.IntN(4) {
						projects := keys(t, c.DB, "projects")
						tasks := keys(t, c.DB, "tasks")
						switch n := rng.IntN(7); {
						case n == 0 || len(projects) == 0:
							run(t, c.DB, "INSERT INTO projects (owner_id, name) VALUES (?, ?)", u, fmt.Sprintf("p%d", rng.IntN(1000)))
						case n == 1 || len(tasks) == 0:
							run(t, c.DB, "INSERT INTO tasks (project_id, title) VALUES (?, ?)", projects[rng.IntN(len(projects))], "new")
						case n == 2:
							run(t, c.DB, "UPDATE tasks SET title = ? WHERE id = ?", fmt.Sprintf("t%d", rng.IntN(1000)), tasks[rng.IntN(len(tasks))])
						case n == 3:
							run(t, c.DB, "DELETE FROM tasks WHERE id = ?", tasks[rng.IntN(len(tasks))])
						case n == 4 || n == 5:
							// Share one of the user's projects with another user.
							var own []string
							if err := c.DB.NewRaw("SELECT CAST(id AS TEXT) FROM projects WHERE owner_id = ?", u).Scan(ctx, &own); err != nil {
								t.Fatal(err)
							}
							if len(own) > 0 {
								other := users[(slices.Index(users, u)+1+rng.IntN(len(users)-1))%len(users)]
								run(t, c.DB, "INSERT INTO members (project_id, user_id) VALUES (?, ?)", own[rng.IntN(len(own))], other)
							}
						default:
							// Unshare: delete a membership of one of the user's projects.
							run(t, c.DB, "DELETE FROM members WHERE id IN (SELECT m.id FROM members m JOIN projects p ON p.id = m.project_id WHERE p.owner_id = ? ORDER BY m.id LIMIT 1)", u)
						}
					}
				}
				// The server's application, directly on its database.
				for range rng.IntN(3) {
					projects := keys(t, srv.DB, "projects")
					tasks := keys(t, srv.DB, "tasks")
					switch n := rng.IntN(5); {
					case n == 0:
						run(t, srv.DB, "INSERT INTO tags (name) VALUES (?)", fmt.Sprintf("tag%d", rng.IntN(1000)))
					case len(projects) == 0:
					case n == 1:
						run(t, srv.DB, "UPDATE projects SET owner_id = ? WHERE id = ?", users[rng.IntN(len(users))], projects[rng.IntN(len(projects))])
					case n == 2:
						run(t, srv.DB, "INSERT INTO tasks (project_id, title) VALUES (?, ?)", projects[rng.IntN(len(projects))], "srv")
					case len(tasks) == 0:
					case n == 3:
						run(t, srv.DB, "UPDATE tasks SET title = ? WHERE id = ?", fmt.Sprintf("s%d", rng.IntN(1000)), tasks[rng.IntN(len(tasks))])
					default:
						run(t, srv.DB, "DELETE FROM tasks WHERE id = ?", tasks[rng.IntN(len(tasks))])
					}
				}
				// Most nodes sync; some stay offline for the round. The
				// server trims its log after about every other round.
				var online []*synctest.Client
				for _, i := range rng.Perm(len(nodes)) {
					if rng.IntN(4) != 0 {
						online = append(online, nodes[i])
					}
				}
				trim := rng.IntN(2) == 0
				trimmer := []*synctest.Server{srv, srv2}[rng.IntN(2)]
				if !dbtest.Long() {
					for _, c := range online {
						syncOne(c)
					}
					if trim {
						if _, err := trimmer.Srv.Trim(ctx); err != nil {
							t.Fatal(err)
						}
					}
					clk.Advance(time.Hour)
					continue
				}
				// Long mode: the nodes sync at the same time, and the
				// trim runs meanwhile.
				errs := make([]error, len(online)+1)
				var wg sync.WaitGroup
				for i, c := range online {
					wg.Go(func() { errs[i] = trySync(c) })
				}
				if trim {
					wg.Go(func() { _, errs[len(online)] = trimmer.Srv.Trim(ctx) })
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Hour)
			}
			for range 2 {
				for _, c := range nodes {
					syncOne(c)
				}
			}
			t.Logf("%d rounds: %d rows moved in, %d out, %d syncs gave changes up, %d resets", rounds, in.Load(), out.Load(), discards.Load(), resets.Load())
			if *convergenceSeed == 0 && out.Load()+discards.Load() == 0 {
				t.Fatalf("the workload of the fixed seed moved no row out of a scope")
			}
			for _, c := range nodes {
				want := scopeDump(t, srv, owner[c])
				if d := synctest.Diff(want, synctest.Dump(t, c.DB, c.Reg)); d != "" {
					t.Fatalf("%s differs from the server's rows in its scope:\n%s", c.Name, d)
				}
				if n := pendingCount(t, c); n != 0 {
					t.Fatalf("%s has %d operations pending after the last sync", c.Name, n)
				}
			}
		})
	}
}

// convergenceSeedOr returns the -seed flag, or def.
func convergenceSeedOr(def int64) *uint64 {
	s := uint64(def)
	if *convergenceSeed != 0 {
		s = uint64(*convergenceSeed)
	}
	return &s
}

// scopeDump is the server's dump restricted to a user's scope, computed
// here independently of the server's rules: the projects the user owns or
// is a member of, their members and tasks, every tag.
func scopeDump(t *testing.T, srv *synctest.Server, user string) map[string][]string {
	t.Helper()
	var projects []string
	if err := srv.DB.NewRaw("SELECT CAST(id AS TEXT) FROM projects WHERE owner_id = ? OR id IN (SELECT project_id FROM members WHERE user_id = ?)", user, user).
		Scan(context.Background(), &projects); err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{}
	for _, p := range projects {
		in[p] = true
	}
	all := synctest.Dump(t, srv.DB, srv.Reg)
	out := map[string][]string{"tags": all["tags"]}
	for _, table := range []string{"projects", "members", "tasks"} {
		out[table] = nil // as Dump has an empty table
		for _, row := range all[table] {
			var r struct {
				ID        int64 `json:"id"`
				ProjectID int64 `json:"project_id"`
			}
			if err := json.Unmarshal([]byte(row), &r); err != nil {
				t.Fatal(err)
			}
			p := r.ProjectID
			if table == "projects" {
				p = r.ID
			}
			if in[strconv.FormatInt(p, 10)] {
				out[table] = append(out[table], row)
			}
		}
	}
	return out
}

// TestScopeChunkedPush: a push sent in chunks is checked against the scope
// when it is committed, as a whole: one row out of scope refuses all of
// it, nothing is written; without that row it is applied.
func TestScopeChunkedPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			run(t, srv.DB, "INSERT INTO tags (id, name) VALUES (1, 'urgent')")
			bob := scopedClientWith(t, srv, "bob", "phone", &client.Config{PushChunkOperations: 2})
			mustSync(t, bob)
			run(t, bob.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'bob', 'p')")
			for i := range 6 {
				run(t, bob.DB, "INSERT INTO tasks (project_id, title) VALUES (1, ?)", fmt.Sprint("t", i))
			}
			run(t, bob.DB, "UPDATE tags SET name = 'mine' WHERE id = 1")
			before := synctest.Dump(t, srv.DB, srv.Reg)
			_, err := bob.Push(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "tags", PK: "1"}) {
				t.Fatalf("chunked push with a tag: %v, want a ScopeError naming tags 1", err)
			}
			if d := synctest.Diff(before, synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("the refused chunked push wrote:\n%s", d)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			run(t, bob.DB, "UPDATE tags SET name = 'urgent' WHERE id = 1")
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			mustSync(t, bob)
			if got := keys(t, srv.DB, "tasks"); len(got) != 6 {
				t.Fatalf("server tasks after the chunked push: %v", got)
			}
		})
	}
}

// TestScopeRepairBytes measures what partial sync saves: users each own a
// project of rows tasks; one user's repair, over HTTP, moves about 1/users
// of what a repair of the whole database moves (the figures are logged).
// 20 users × 50 rows; with DBSYNC_LONG=1 1,000 users × 1,000 rows.
func TestScopeRepairBytes(t *testing.T) {
	t.Parallel()
	users, rows := dbtest.Size(10, 20, 1000), dbtest.Size(20, 50, 1000)
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			// Rows written on the server itself, in bulk.
			run(t, srv.DB, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
				INSERT INTO projects (id, owner_id, name) SELECT i, 'u' || i, 'p' || i FROM n`, users)
			run(t, srv.DB, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
				INSERT INTO tasks (id, project_id, title) SELECT i + 1, i / ? + 1, 'task ' || i FROM n`, users*rows, rows)
			// Sealed here, not by the first repair: a million direct
			// writes take longer than a client waits for an answer's
			// headers on a busy machine.
			if _, err := srv.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			one := scopedClient(t, srv, "u7", "phone")
			res, err := one.Repair(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The same database served without scopes: the whole of it.
			whole := synctest.NewServerWith(t, srv.DB, testmodels.CreateScoped, testmodels.Scoped(), nil)
			all := synctest.NewClientWith(t, whole, "all", scopedClientDB(t), testmodels.CreateScoped, testmodels.Scoped(), nil)
			allRes, err := all.Repair(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d users × %d rows: one user's repair %d rows, %d bytes; the whole database %d rows, %d bytes (1/%.0f)",
				users, rows, res.Rows, res.Bytes, allRes.Rows, allRes.Bytes, float64(allRes.Bytes)/float64(res.Bytes))
			if res.Rows != int64(rows+1) || allRes.Rows != int64(users*(rows+1)) {
				t.Fatalf("repaired %d and %d rows, want %d and %d", res.Rows, allRes.Rows, rows+1, users*(rows+1))
			}
			if res.Bytes*int64(users) > 2*allRes.Bytes {
				t.Fatalf("one user's repair moves %d bytes of %d: not about 1/%d", res.Bytes, allRes.Bytes, users)
			}
		})
	}
}

// TestScopeHeldKeysBound: a pull's held keys are bounded by the server's
// handlers.Config.MaxPullBytes: beyond it the pull is refused (413) and the
// client says why, naming the rows it holds and the setting; nothing is
// applied.
func TestScopeHeldKeysBound(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			run(t, srv.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
			values := make([]string, 500)
			for i := range values {
				values[i] = fmt.Sprintf("(%d, 1, 't')", i+1)
			}
			run(t, srv.DB, "INSERT INTO tasks (id, project_id, title) VALUES "+strings.Join(values, ", "))
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(srv.Srv, &handlers.Config{MaxPullBytes: 2048}))
			hs := httptest.NewServer(r)
			defer hs.Close()
			ann := scopedClientWith(t, srv, "ann", "phone", &client.Config{URL: hs.URL + "/sync"})
			mustSync(t, ann) // holds nothing yet: a small body
			_, err := ann.Pull(ctx)
			if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "MaxPullBytes") {
				t.Fatalf("pull holding %v: %v, want ErrTooLarge naming MaxPullBytes", keys(t, ann.DB, "tasks"), err)
			}
		})
	}
}

// TestScopeHeldKeysCost measures a pull with nothing new by a node holding
// many rows on a scoped server: the size of its held keys (the pull body)
// and its duration. The figures are logged (README "Partial sync").
// DBSYNC_LONG=1: 200,000 rows.
func TestScopeHeldKeysCost(t *testing.T) {
	if !dbtest.Long() {
		t.Skip("DBSYNC_LONG=1 runs it")
	}
	const rows = 200_000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			run(t, srv.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
			run(t, srv.DB, fmt.Sprintf("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %d) "+
				"INSERT INTO tasks (id, project_id, title) SELECT n, 1, 'task' FROM s", rows))
			ann := scopedClient(t, srv, "ann", "phone")
			if _, err := ann.Repair(ctx, nil); err != nil {
				t.Fatal(err)
			}
			held := map[string][]string{"projects": keys(t, ann.DB, "projects"), "tasks": keys(t, ann.DB, "tasks"), "members": {}}
			body, err := json.Marshal(held)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res, err := ann.Pull(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.ScopeIn != 0 || res.ScopeOut != 0 {
				t.Fatalf("pull with nothing new moved rows: %+v", res)
			}
			t.Logf("%s: a pull with nothing new, holding %d rows: held keys %d bytes (%.1f per key), %v",
				kind, rows+1, len(body), float64(len(body))/float64(rows+1), time.Since(start).Round(time.Millisecond))
		})
	}
}
