package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// heldRecorder notes, for each pull request it sees, whether the request
// lists held keys of a table.
type heldRecorder struct {
	table string
	mu    sync.Mutex
	held  []bool
}

func (hr *heldRecorder) wrap(t *testing.T, next func() http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/pull") && r.Body != nil {
			body, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				t.Errorf("read pull body: %v", err)
			}
			var req protocol.PullRequest
			if err := json.Unmarshal(body, &req); err != nil {
				t.Errorf("pull body: %v", err)
			}
			_, ok := req.Held[hr.table]
			hr.mu.Lock()
			hr.held = append(hr.held, ok)
			hr.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next().ServeHTTP(w, r)
	})
}

// take returns what was noted since the last take.
func (hr *heldRecorder) take() []bool {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	out := hr.held
	hr.held = nil
	return out
}

// TestScopeRulesChangeGlobal, servers and nodes of both dialects, over
// HTTP: the server restarts with server.Config.Scopes making a scoped
// table global (tags, each user's own before). Ann's and bob's nodes,
// each holding its tags, get at their first sync after the change every
// tag they lacked (scope_in, unlogged), without a repair: the node runs on
// (its last pull header named tags, so its request lists their keys) or
// is a new client.Client on the same database (refused held_keys_needed,
// it asks again with the keys of every pulled table). A tag the server
// changes after the change comes once, as an operation. The header names
// tags no more: the next sync's request lists no tag key, and moves
// nothing. Before, the tags they lacked came only as versions changed
// them.
func TestScopeRulesChangeGlobal(t *testing.T) {
	t.Parallel()
	mods := testmodels.Scoped()
	before := synctest.ScopeRules()
	before["tags"] = server.OwnedBy("name")
	after := synctest.ScopeRules()
	// Every table global: the server asks no held keys, and a node that
	// runs on lists those its last header named, once.
	global := server.Scopes{}
	for name := range after {
		global[name] = server.Global()
	}
	all := []string{"1", "2", "3", "4", "5", "6"}
	for _, kind := range dbtest.Kinds {
		for _, v := range []struct {
			name    string
			restart bool
			after   server.Scopes
		}{{"running", false, after}, {"restarted", true, after}, {"all-global", false, global}} {
			t.Run(kind+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				sc := newScopeChange(t, kind, kind, mods, before)
				db, rec, ann, bob := sc.db, sc.rec, sc.ann, sc.bob
				sc.change(t, v.after)
				// A tag ann lacked changes, and a new one comes: as
				// operations, not moved in again.
				run(t, db, "UPDATE tags SET name = 'bobby' WHERE id = 2")
				run(t, db, "INSERT INTO tags (id, name) VALUES (6, 'dan')")
				if v.restart {
					sc.restart(ctx, t)
				}
				rec.take()
				moreIn := int64(0)
				if v.name == "all-global" {
					moreIn = 1 // bob's project 10
				}
				for _, tc := range []struct {
					c       *synctest.Client
					scopeIn int64
				}{{ann, 2}, {bob, 3 + moreIn}} { // ann: 4, 5; bob: 1, 3, 5
					res, err := tc.c.Sync(ctx)
					if err != nil {
						t.Fatalf("%s's first sync after the change: %v", tc.c.Name, err)
					}
					wantKeys(t, tc.c, "tags", all...)
					if in := scopeIn(res); in != tc.scopeIn {
						t.Fatalf("%s's first sync after the change moved %d rows in, want %d", tc.c.Name, in, tc.scopeIn)
					}
					if held := rec.take(); len(held) == 0 || !held[len(held)-1] {
						t.Fatalf("%s's first sync after the change: pulls listing tag keys %v, want the last one to", tc.c.Name, held)
					}
					if n := pendingCount(t, tc.c); n != 0 {
						t.Fatalf("%s holds %d pending operations, want none (the tags came unlogged)", tc.c.Name, n)
					}
					if got, want := tagNames(t, tc.c.DB), tagNames(t, db); !slices.Equal(got, want) {
						t.Fatalf("%s's tags are %v, the server's %v", tc.c.Name, got, want)
					}
				}
				for _, c := range []*synctest.Client{ann, bob} {
					res, err := c.Sync(ctx)
					if err != nil {
						t.Fatalf("%s's second sync after the change: %v", c.Name, err)
					}
					if in := scopeIn(res); in != 0 {
						t.Fatalf("%s's second sync after the change moved %d rows in, want none", c.Name, in)
					}
					if held := rec.take(); len(held) != 1 || held[0] {
						t.Fatalf("%s's second sync after the change: pulls listing tag keys %v, want one pull not listing them", c.Name, held)
					}
					wantKeys(t, c, "tags", all...)
				}
				wantKeys(t, ann, "projects", "10")
				if v.name != "all-global" {
					wantKeys(t, bob, "projects")
				} else {
					wantKeys(t, bob, "projects", "10") // moved in too
				}
			})
		}
	}
}

// scopeIn counts the rows a sync's pulls moved in.
func scopeIn(res *client.SyncResult) int64 {
	var n int64
	for _, p := range res.Pulls {
		n += p.ScopeIn
	}
	return n
}

// tagNames lists the tags of db, "id name", by id.
func tagNames(t *testing.T, db bun.IDB) []string {
	t.Helper()
	var out []string
	if err := db.NewRaw("SELECT CAST(id AS TEXT) || ' ' || name FROM tags ORDER BY id").Scan(context.Background(), &out); err != nil {
		t.Fatalf("read tags: %v", err)
	}
	return out
}

// TestScopeGlobalAfterRestart, servers of both dialects, nodes on SQLite
// and PostgreSQL, over HTTP: as TestScopeRulesChangeGlobal, tags go from
// each user's own to global, but the server restarts with every table
// global (all-global) or without scopes at all (no-scopes), and each
// node is a new client.Client on its database between the change and its
// first sync (restarted) or runs on. That sync brings every row the node
// lacked (tags; bob's project 10 too), without a repair: the node lists
// the keys of the tables its latest pull header named scoped, recorded
// in its database (sync_node_tables), so a new Client lists them too; a
// server with scopes answers them with scope_in lines, one without
// ignores them and its header does not say held_read, so the node asks
// at once for those tables whole (a backfill, two rows a line). The
// second sync lists no tag key and brings nothing. Before, a restarted
// node knew no scoped table and was asked for no keys, and a server
// without scopes never sent the rows: both nodes lacked them until a
// repair.
func TestScopeGlobalAfterRestart(t *testing.T) {
	t.Parallel()
	mods := testmodels.Scoped()
	before := synctest.ScopeRules()
	before["tags"] = server.OwnedBy("name")
	global := server.Scopes{}
	for name := range before {
		global[name] = server.Global()
	}
	all := []string{"1", "2", "3", "4", "5", "6"}
	for _, kind := range dbtest.Kinds {
		for _, nodeKind := range dbtest.Kinds {
			for _, v := range []struct {
				name    string
				restart bool
				after   server.Scopes
			}{{"all-global/restarted", true, global}, {"no-scopes/running", false, nil}, {"no-scopes/restarted", true, nil}} {
				t.Run(kind+"/node="+nodeKind+"/"+v.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					sc := newScopeChange(t, kind, nodeKind, mods, before)
					db, rec, ann, bob := sc.db, sc.rec, sc.ann, sc.bob
					wantKeys(t, bob, "projects")
					sc.change(t, v.after)
					run(t, db, "UPDATE tags SET name = 'bobby' WHERE id = 2")
					run(t, db, "INSERT INTO tags (id, name) VALUES (6, 'dan')")
					if v.restart {
						sc.restart(ctx, t)
					}
					rec.take()
					for _, tc := range []struct {
						c       *synctest.Client
						scopeIn int64
					}{{ann, 2}, {bob, 4}} { // ann: tags 4, 5; bob: tags 1, 3, 5, project 10
						res, err := tc.c.Sync(ctx)
						if err != nil {
							t.Fatalf("%s's first sync after the change: %v", tc.c.Name, err)
						}
						wantKeys(t, tc.c, "tags", all...)
						wantKeys(t, tc.c, "projects", "10")
						held := rec.take()
						if len(held) == 0 || !held[0] {
							t.Fatalf("%s's first sync after the change: pulls listing tag keys %v, want the first one to", tc.c.Name, held)
						}
						var backfilled int64
						for _, p := range res.Pulls {
							backfilled += p.Backfilled
						}
						if v.after != nil {
							if in := scopeIn(res); in != tc.scopeIn || backfilled != 0 {
								t.Fatalf("%s's first sync after the change moved %d rows in and backfilled %d, want %d and none", tc.c.Name, in, backfilled, tc.scopeIn)
							}
						} else if in := scopeIn(res); in != 0 || backfilled == 0 {
							t.Fatalf("%s's first sync after the change moved %d rows in and backfilled %d, want none and the tables whole", tc.c.Name, in, backfilled)
						}
						if n := pendingCount(t, tc.c); n != 0 {
							t.Fatalf("%s holds %d pending operations, want none (the rows came unlogged)", tc.c.Name, n)
						}
						if got, want := tagNames(t, tc.c.DB), tagNames(t, db); !slices.Equal(got, want) {
							t.Fatalf("%s's tags are %v, the server's %v", tc.c.Name, got, want)
						}
					}
					if v.restart {
						sc.restart(ctx, t)
					}
					for _, c := range []*synctest.Client{ann, bob} {
						res, err := c.Sync(ctx)
						if err != nil {
							t.Fatalf("%s's second sync after the change: %v", c.Name, err)
						}
						if res.Changed() || scopeIn(res) != 0 {
							t.Fatalf("%s's second sync after the change: %v, %d rows moved in; want nothing", c.Name, res, scopeIn(res))
						}
						if held := rec.take(); len(held) != 1 || held[0] {
							t.Fatalf("%s's second sync after the change: pulls listing tag keys %v, want one pull not listing them", c.Name, held)
						}
						wantKeys(t, c, "tags", all...)
					}
				})
			}
		}
	}
}

// TestScopesDroppedPullRestart, servers of both dialects, nodes of both,
// over HTTP: the server drops its scopes; ann's node pulls once with
// Client.Pull (which does not pull again at once: the server ignored her
// held keys, and the tables she held in part are recorded for a
// backfill), then her application restarts before any other pull. The
// new client.Client's first pull backfills those tables whole: the
// record of what the node lacks survives the restart. Before, the rows
// never came but as versions changed them, or at a repair.
func TestScopesDroppedPullRestart(t *testing.T) {
	t.Parallel()
	mods := testmodels.Scoped()
	before := synctest.ScopeRules()
	before["tags"] = server.OwnedBy("name")
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := synctest.ServerDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods)
			_, first := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: before})
			var current atomic.Pointer[http.Handler]
			current.Store(&first)
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) }))
			t.Cleanup(hs.Close)
			cfg := &client.Config{URL: hs.URL + "/sync", ChunkSize: 2}
			ann := synctest.NewClientAs(t, nil, "ann", "Bearer ann", synctest.ClientDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods),
				testmodels.CreateScoped, mods, cfg)
			run(t, db, "INSERT INTO tags (id, name) VALUES (1, 'ann'), (2, 'bob'), (3, 'ann'), (4, 'bob'), (5, 'carl')")
			run(t, db, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'bob', 'his')")
			mustSync(t, ann)
			mustSync(t, ann)
			wantKeys(t, ann, "tags", "1", "3")
			wantKeys(t, ann, "projects")

			_, second := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser})
			current.Store(&second)
			if _, err := ann.Pull(ctx); err != nil {
				t.Fatalf("ann's pull after the change: %v", err)
			}
			wantKeys(t, ann, "tags", "1", "3")
			cl, err := client.New(ctx, ann.DB, ann.Reg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ann.Client = cl
			res, err := ann.Pull(ctx)
			if err != nil {
				t.Fatalf("the restarted client's pull: %v", err)
			}
			if res.Backfilled == 0 {
				t.Fatalf("the restarted client's pull: %v, want a backfill", res)
			}
			wantKeys(t, ann, "tags", "1", "2", "3", "4", "5")
			wantKeys(t, ann, "projects", "10")
			if res, err := ann.Pull(ctx); err != nil || res.Changed() {
				t.Fatalf("a pull after the backfill: %v, %v; want nothing", res, err)
			}
			if n := pendingCount(t, ann); n != 0 {
				t.Fatalf("ann holds %d pending operations, want none", n)
			}
		})
	}
}

// scopeChange is a server of kind whose scopes (first before: tags each
// user's own) a test changes behind one URL, which records the held tag
// keys pulls list (rec), and ann's and bob's nodes of nodeKind, each
// synced twice and holding its own tags (1, 3 and 2, 4 of 1–5; project
// 10 is ann's). Pulls take two rows a chunk: rows moved in are read over
// pages.
type scopeChange struct {
	db       *bun.DB
	mods     []any
	rec      *heldRecorder
	cfg      *client.Config
	current  atomic.Pointer[http.Handler]
	ann, bob *synctest.Client
}

func newScopeChange(t *testing.T, kind, nodeKind string, mods []any, before server.Scopes) *scopeChange {
	t.Helper()
	sc := &scopeChange{db: synctest.ServerDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods), mods: mods, rec: &heldRecorder{table: "tags"}}
	sc.change(t, before)
	hs := httptest.NewServer(sc.rec.wrap(t, func() http.Handler { return *sc.current.Load() }))
	t.Cleanup(hs.Close)
	sc.cfg = &client.Config{URL: hs.URL + "/sync", ChunkSize: 2}
	newNode := func(user string) *synctest.Client {
		return synctest.NewClientAs(t, nil, user, "Bearer "+user, synctest.ClientDB(t, nodeKind, "scopedkinds", testmodels.CreateScoped, mods),
			testmodels.CreateScoped, mods, sc.cfg)
	}
	sc.ann, sc.bob = newNode("ann"), newNode("bob")
	run(t, sc.db, "INSERT INTO tags (id, name) VALUES (1, 'ann'), (2, 'bob'), (3, 'ann'), (4, 'bob'), (5, 'carl')")
	run(t, sc.db, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'ann', 'mine')")
	for _, c := range []*synctest.Client{sc.ann, sc.bob} {
		mustSync(t, c)
		mustSync(t, c)
	}
	wantKeys(t, sc.ann, "tags", "1", "3")
	wantKeys(t, sc.bob, "tags", "2", "4")
	return sc
}

// change restarts the server with scopes (nil: none).
func (sc *scopeChange) change(t *testing.T, scopes server.Scopes) {
	t.Helper()
	_, h := synctest.NewHandler(t, sc.db, sc.mods, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: scopes})
	sc.current.Store(&h)
}

// restart gives each node a new client.Client on its database, as a new
// process of the application would.
func (sc *scopeChange) restart(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, c := range []*synctest.Client{sc.ann, sc.bob} {
		cl, err := client.New(ctx, c.DB, c.Reg, sc.cfg)
		if err != nil {
			t.Fatalf("%s: new client: %v", c.Name, err)
		}
		c.Client = cl
	}
}
