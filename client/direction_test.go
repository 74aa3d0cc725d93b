package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// tagV1 is a table release 1 and 2 both push.
type tagV1 struct {
	bun.BaseModel `bun:"table:tags"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Text string `bun:"text,notnull"`
}

func createTagsV1(ctx context.Context, db bun.IDB) error {
	if err := createV1(ctx, db); err != nil {
		return err
	}
	_, err := db.NewCreateTable().Model((*tagV1)(nil)).IfNotExists().Exec(ctx)
	return err
}

// TestPullOnlyAfterUpgradeDropsPending: release 2 of an application makes
// a table pull-only (reference data the server owns from then on). A
// node with unpushed changes to it, made under release 1, upgrades: its
// release no longer pushes the table, so those changes are given up
// (like a dropped table's), the rows taking the server's values, and the
// node's other changes are pushed; its syncs are not refused for ever.
// With lost, the node's last push under release 1, carrying those
// changes, was applied but its answer lost: the upgraded node settles it.
// With cut, that push never reached the server.
func TestPullOnlyAfterUpgradeDropsPending(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct{ lost, cut bool }{{}, {lost: true}, {cut: true}} {
			t.Run(fmt.Sprintf("%s/lost=%v/cut=%v", kind, tc.lost, tc.cut), func(t *testing.T) {
				t.Parallel()
				pullOnlyAfterUpgrade(t, kind, tc.lost, tc.cut)
			})
		}
	}
}

func pullOnlyAfterUpgrade(t *testing.T, kind string, lost, cut bool) {
	ctx := context.Background()
	serverDB := dbtest.Open(t, kind)
	models1 := []any{(*projectV1)(nil), (*tagV1)(nil)}
	srv1 := synctest.NewServerWith(t, serverDB, createTagsV1, models1, nil)
	dbA := dbtest.Open(t, kind)
	var lose, drop atomic.Bool
	hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/push") && drop.CompareAndSwap(true, false) {
			return nil, errors.New("connection refused")
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/push") && lose.CompareAndSwap(true, false) {
			resp.Body.Close()
			return nil, errors.New("connection cut")
		}
		return resp, err
	})}
	a := synctest.NewClientWith(t, srv1, "a", dbA, createTagsV1, models1, &client.Config{HTTPClient: hc})
	execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two')")
	syncOK(t, a.Client)
	// Offline, under release 1: an update, a delete, an insert,
	// and a change to a table release 2 still pushes.
	execSQL(t, dbA, "UPDATE projects SET name = 'one, renamed by a' WHERE id = 1")
	execSQL(t, dbA, "DELETE FROM projects WHERE id = 2")
	execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('three')")
	execSQL(t, dbA, "INSERT INTO tags (text) VALUES ('kept')")
	wantProjects := []string{`{"id":1,"name":"one"}`, `{"id":2,"name":"two"}`}
	if lost {
		lose.Store(true)
		if _, err := a.Client.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
			t.Fatalf("a push whose answer is lost: %v", err)
		}
		wantProjects = []string{`{"id":1,"name":"one, renamed by a"}`, `{"id":3,"name":"three"}`}
	}
	if cut {
		drop.Store(true)
		if _, err := a.Client.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
			t.Fatalf("a push cut on its way: %v", err)
		}
	}

	models2 := []any{dbsync.PullOnly((*projectV1)(nil)), (*tagV1)(nil)}
	srv2 := synctest.NewServerWith(t, serverDB, noSchema, models2, nil)
	newA := restart(t, srv2, dbA, 0, nil, models2...)
	if res := syncOK(t, newA); !lost && !cut && (len(res.Pushes) != 1 || res.Pushes[0].Operations != 1) {
		t.Fatalf("the upgraded node's sync must push its change to tags alone: %v", res)
	}
	if res := syncOK(t, newA); res.Changed() {
		t.Fatalf("a second sync changed something: %v", res)
	}
	want := synctest.Dump(t, serverDB, srv2.Reg)
	if strings.Join(want["projects"], " ") != strings.Join(wantProjects, " ") || len(want["tags"]) != 1 {
		t.Fatalf("server: %v", want)
	}
	if d := synctest.Diff(want, synctest.Dump(t, dbA, srv2.Reg)); d != "" {
		t.Fatalf("node differs from the server:\n%s", d)
	}
	if p, err := newA.Pending(ctx); err != nil || len(p) != 0 {
		t.Fatalf("pending after the sync: %v, %v", p, err)
	}
}

// ptaskV1 is a task of a project (projectV1), both tracked by release 1.
type ptaskV1 struct {
	bun.BaseModel `bun:"table:ptasks"`

	ID        int64  `bun:"id,pk,autoincrement"`
	ProjectID int64  `bun:"project_id,notnull"`
	Text      string `bun:"text,notnull"`
}

func createPtasks(ctx context.Context, db bun.IDB) error {
	if err := createV1(ctx, db); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS ptasks (id INTEGER PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES projects (id), text TEXT NOT NULL)")
	return err
}

// TestPullOnlyUpgradeChildOfCreated, both dialects: as
// TestPullOnlyAfterUpgradeDropsPending, but a project the node inserted
// under release 1 and never pushed has a task of the node's (not pushed
// either) under it, when release 2 makes projects pull-only. The project
// cannot be pushed, so it goes; its task would reference nothing. The
// push is refused with dbsync.ErrPendingChanges and a *dbsync.ScopeError
// naming the task, nothing given up; re-pointed (or given up), the next
// sync gives the project up and pushes the tasks. Before, every sync
// failed on the project's delete with a foreign key error naming no row.
func TestPullOnlyUpgradeChildOfCreated(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, discard := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/discard=%v", kind, discard), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				serverDB := dbtest.Open(t, kind)
				models1 := []any{(*projectV1)(nil), (*ptaskV1)(nil)}
				srv1 := synctest.NewServerWith(t, serverDB, createPtasks, models1, nil)
				dbA := dbtest.Open(t, kind)
				a := synctest.NewClientWith(t, srv1, "a", dbA, createPtasks, models1, nil)
				execSQL(t, dbA, "INSERT INTO projects (id, name) VALUES (1, 'one')")
				syncOK(t, a.Client)
				execSQL(t, dbA, "INSERT INTO projects (id, name) VALUES (3, 'three')")
				execSQL(t, dbA, "INSERT INTO ptasks (id, project_id, text) VALUES (10, 3, 'on three'), (11, 1, 'on one')")

				models2 := []any{dbsync.PullOnly((*projectV1)(nil)), (*ptaskV1)(nil)}
				srv2 := synctest.NewServerWith(t, serverDB, noSchema, models2, nil)
				a2 := restart(t, srv2, dbA, 0, nil, models2...)
				_, err := a2.Sync(ctx)
				var se *dbsync.ScopeError
				want := []protocol.ScopeEntry{{Table: "ptasks", PK: "10"}}
				if !errors.Is(err, dbsync.ErrPendingChanges) || !errors.As(err, &se) || fmt.Sprint(se.Entries) != fmt.Sprint(want) {
					t.Fatalf("sync: %v, want ErrPendingChanges and a ScopeError naming %v", err, want)
				}
				if got := rowsOf(t, dbA, "SELECT CAST(id AS TEXT) FROM projects ORDER BY id"); fmt.Sprint(got) != "[1 3]" {
					t.Fatalf("node projects after the refusal %v, want [1 3] (nothing given up)", got)
				}
				wantTasks := "[11:1]"
				if discard {
					if err := a2.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
				} else {
					execSQL(t, dbA, "UPDATE ptasks SET project_id = 1 WHERE id = 10")
					wantTasks = "[10:1 11:1]"
				}
				syncOK(t, a2)
				for name, db := range map[string]*bun.DB{"node": dbA, "server": serverDB} {
					if got := rowsOf(t, db, "SELECT CAST(id AS TEXT) FROM projects ORDER BY id"); fmt.Sprint(got) != "[1]" {
						t.Fatalf("%s projects %v, want [1]", name, got)
					}
					if got := rowsOf(t, db, "SELECT CAST(id AS TEXT) || ':' || CAST(project_id AS TEXT) FROM ptasks ORDER BY id"); fmt.Sprint(got) != wantTasks {
						t.Fatalf("%s tasks %v, want %s", name, got, wantTasks)
					}
				}
			})
		}
	}
}

func rowsOf(t *testing.T, db *bun.DB, q string) []string {
	t.Helper()
	var out []string
	if err := db.NewRaw(q).Scan(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPulledAfterPushOnly: release 2 of an application pulls a table
// release 1 pushed only (tags). The nodes never received the tags of
// others; once upgraded, each node's first sync brings them whole (a
// backfill, two rows a line, before it pushes), without a repair: the
// node recorded which tables its release pulled (sync_node_tables). A
// tag the node changed under release 1 and had not pushed keeps its
// change, which the sync then pushes; the node's other tags take the
// server's values (one the server changed directly). Before, the nodes
// got only the tags changed after the upgrade, and diverged until each
// repaired.
func TestPulledAfterPushOnly(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			models1 := []any{(*projectV1)(nil), dbsync.PushOnly((*tagV1)(nil))}
			srv1 := synctest.NewServerWith(t, serverDB, createTagsV1, models1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createTagsV1, models1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createTagsV1, models1, nil)
			execSQL(t, dbA, "INSERT INTO projects (id, name) VALUES (1, 'one')")
			execSQL(t, dbA, "INSERT INTO tags (id, text) VALUES (1, 'a1'), (2, 'a2')")
			syncOK(t, a.Client)
			execSQL(t, dbB, "INSERT INTO tags (id, text) VALUES (10, 'b10'), (11, 'b11'), (12, 'b12'), (13, 'b13'), (14, 'b14')")
			syncOK(t, b.Client)
			// Under release 1: the server changes tag 2 directly, in a
			// version a pulls (nothing of tags); a changes its tag 1 and
			// does not push.
			execSQL(t, serverDB, "UPDATE tags SET text = 'a2, changed by the server' WHERE id = 2")
			if _, err := srv1.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			syncOK(t, a.Client)
			execSQL(t, dbA, "UPDATE tags SET text = 'a1, changed by a' WHERE id = 1")

			models2 := []any{(*projectV1)(nil), (*tagV1)(nil)}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, models2, nil)
			for _, n := range []struct {
				name string
				db   *bun.DB
			}{{"a", dbA}, {"b", dbB}} {
				reg, err := dbsync.Track(n.db, models2...)
				if err != nil {
					t.Fatal(err)
				}
				c, err := client.New(ctx, n.db, reg, &client.Config{URL: srv2.URL, ChunkSize: 2})
				if err != nil {
					t.Fatal(err)
				}
				res := syncOK(t, c)
				if len(res.Pulls) == 0 || res.Pulls[0].Backfilled != 7 {
					t.Fatalf("%s's first sync after the upgrade: %v, want a pull backfilling the 7 tags", n.name, res)
				}
				if n.name == "a" && (len(res.Pushes) != 1 || res.Pushes[0].Operations != 1) {
					t.Fatalf("a's first sync after the upgrade must push its change to tag 1: %v", res)
				}
				if res := syncOK(t, c); res.Changed() {
					t.Fatalf("%s's second sync after the upgrade changed something: %v", n.name, res)
				}
				// A new Client (the application restarted) has nothing
				// more to backfill.
				c, err = client.New(ctx, n.db, reg, &client.Config{URL: srv2.URL})
				if err != nil {
					t.Fatal(err)
				}
				if res := syncOK(t, c); res.Changed() {
					t.Fatalf("%s's sync after a restart changed something: %v", n.name, res)
				}
			}
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["tags"], " "); !strings.Contains(got, `"a1, changed by a"`) || !strings.Contains(got, `"a2, changed by the server"`) || len(want["tags"]) != 7 {
				t.Fatalf("server's tags: %s", got)
			}
			for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Fatalf("node %s differs from the server:\n%s", name, d)
				}
			}
		})
	}
}

// TestPulledNodeUpgradedFirst: as TestPulledAfterPushOnly, but the node
// upgrades before the server: the server, still pushing tags only,
// refuses the node's backfill of them (400), and the node's syncs go on
// without it (its changes pushed) rather than fail, the table still
// recorded; once the server pulls tags too, the node's next sync
// backfills them.
func TestPulledNodeUpgradedFirst(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			serverDB := dbtest.Open(t, kind)
			models1 := []any{(*projectV1)(nil), dbsync.PushOnly((*tagV1)(nil))}
			srv1 := synctest.NewServerWith(t, serverDB, createTagsV1, models1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createTagsV1, models1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createTagsV1, models1, nil)
			execSQL(t, dbB, "INSERT INTO tags (id, text) VALUES (10, 'b10'), (11, 'b11'), (12, 'b12')")
			syncOK(t, b.Client)
			syncOK(t, a.Client)

			models2 := []any{(*projectV1)(nil), (*tagV1)(nil)}
			newA := restart(t, srv1, dbA, 0, nil, models2...)
			execSQL(t, dbA, "INSERT INTO projects (id, name) VALUES (1, 'one')")
			for range 2 {
				res := syncOK(t, newA)
				for _, p := range res.Pulls {
					if p.Backfilled != 0 {
						t.Fatalf("a server that does not pull tags backfilled them: %v", res)
					}
				}
			}
			if got := synctest.Dump(t, serverDB, srv1.Reg)["projects"]; len(got) != 1 {
				t.Fatalf("the node's project was not pushed: %v", got)
			}
			// A new Client still knows the tags are due.
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, models2, nil)
			newA = restart(t, srv2, dbA, 0, nil, models2...)
			res := syncOK(t, newA)
			if len(res.Pulls) == 0 || res.Pulls[0].Backfilled != 3 {
				t.Fatalf("the sync once the server pulls tags: %v, want the 3 tags backfilled", res)
			}
			if res := syncOK(t, newA); res.Changed() {
				t.Fatalf("a second sync changed something: %v", res)
			}
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if d := synctest.Diff(want, synctest.Dump(t, dbA, srv2.Reg)); d != "" {
				t.Fatalf("node a differs from the server:\n%s", d)
			}
		})
	}
}
