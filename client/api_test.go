package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// logRows returns a node's whole operations log, one line per entry.
func logRows(t *testing.T, c *synctest.Client) []string {
	t.Helper()
	var rows []struct {
		Order   int64  `bun:"order"`
		RowID   string `bun:"row_id"`
		CT      int64  `bun:"content_type_id"`
		Command string `bun:"command"`
	}
	if err := c.DB.NewRaw(`SELECT "order", row_id, content_type_id, command FROM sync_operations ORDER BY "order"`).Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%d %s %d %s", r.Order, r.RowID, r.CT, strings.TrimSpace(r.Command))
	}
	return out
}

// Pending reads the log compressed but leaves it as it is: the
// compression is written by the push. Also with an unanswered push, whose
// operations are reported as they were sent. Clients on both databases.
func TestPendingReadOnly(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
			tr := &transport{}
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models()), testmodels.CreateSchema, synctest.Models(),
				&client.Config{HTTPClient: tr.client()})
			l := insertList(t, a.DB, "home")
			exec(t, a.DB, "UPDATE lists SET name = 'house' WHERE id = ?", l) // i u → i
			gone := insertList(t, a.DB, "gone")
			exec(t, a.DB, "DELETE FROM lists WHERE id = ?", gone) // i d → nothing
			before := logRows(t, a)
			if len(before) != 4 {
				t.Fatalf("log before: %v", before)
			}
			p, err := a.Pending(ctx)
			if err != nil || len(p) != 1 || p[0].Command != "i" || p[0].RowID != fmt.Sprint(l) {
				t.Fatalf("pending: %+v, %v", p, err)
			}
			if after := logRows(t, a); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Fatalf("Pending changed the log:\nbefore %v\nafter  %v", before, after)
			}

			// A push whose answer is lost stays as sent; later changes are
			// compressed in the view only.
			tr.setHook(loseReply("push"))
			if _, err := a.Push(ctx); err == nil {
				t.Fatal("push with a lost answer succeeded")
			}
			tr.setHook(nil)
			exec(t, a.DB, "UPDATE lists SET name = 'flat' WHERE id = ?", l)
			exec(t, a.DB, "UPDATE lists SET name = 'home' WHERE id = ?", l) // u u → u
			before = logRows(t, a)
			p, err = a.Pending(ctx)
			if err != nil || len(p) != 2 || p[0].Command != "i" || p[1].Command != "u" {
				t.Fatalf("pending with an unanswered push: %+v, %v", p, err)
			}
			if after := logRows(t, a); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Fatalf("Pending changed the log:\nbefore %v\nafter  %v", before, after)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if p, err := a.Pending(ctx); err != nil || len(p) != 0 {
				t.Fatalf("pending after sync: %+v, %v", p, err)
			}
			converged(t, srv, a)
		})
	}
}

// Version reports the server version a node holds, 0 before any.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateLocalServer(t, kind, nil)
			a := synctest.NewTemplateClient(t, srv, "a", nil)
			b := synctest.NewTemplateClient(t, srv, "b", nil)
			version := func(c *synctest.Client, want int64) {
				t.Helper()
				if v, err := c.Version(ctx); err != nil || v != want {
					t.Fatalf("%s: Version = %d, %v; want %d", c.Name, v, err, want)
				}
			}
			version(a, 0)
			insertList(t, a.DB, "x")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			version(a, 1)
			version(b, 0)
			insertList(t, a.DB, "y")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			version(a, 2)
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			version(b, 2)
		})
	}
}

// A Sync that moved nothing says so (Changed, String); one that pushed or
// pulled says what it did.
func TestSyncResultChanged(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateLocalServer(t, kind, nil)
			a := synctest.NewTemplateClient(t, srv, "a", nil)
			b := synctest.NewTemplateClient(t, srv, "b", nil)
			check := func(c *synctest.Client, changed bool, want string) {
				t.Helper()
				res, err := c.Sync(ctx)
				if err != nil {
					t.Fatalf("%s: sync: %v", c.Name, err)
				}
				if res.Changed() != changed || res.String() != want || fmt.Sprint(res) != want {
					t.Fatalf("%s: sync: Changed %v, %q; want %v, %q", c.Name, res.Changed(), res, changed, want)
				}
			}
			check(a, false, "nothing to push or pull; at version 0")
			l := insertList(t, a.DB, "x")
			insertTodos(t, a.DB, l, "t", 2)
			check(a, true, "pushed 3 operation(s); at version 1")
			check(a, false, "nothing to push or pull; at version 1")
			check(b, true, "pulled 1 version(s); at version 1")
			check(b, false, "nothing to push or pull; at version 1")
			// Conflicting edits: b's push is refused, b pulls, merges, pushes.
			exec(t, a.DB, "UPDATE todos SET title = 'a' WHERE title = 't-0'")
			exec(t, b.DB, "UPDATE todos SET title = 'b' WHERE title = 't-0'")
			check(a, true, "pushed 1 operation(s); at version 2")
			check(b, true, "pushed 1 operation(s); pulled 1 version(s) (conflicts resolved: update_update×1); at version 3")
			check(a, true, "pulled 1 version(s); at version 3")
			converged(t, srv, a)
		})
	}
}

// New leaves the caller's registry as Track made it: the catalog's
// constraints (here a unique index that no bun tag declares) go into the
// copy New works on.
func TestNewLeavesRegistryAlone(t *testing.T) {
	t.Parallel()
	type snapshot struct {
		fingerprint string
		uniques     string
		fks         string
		order       string
	}
	snap := func(reg *dbsync.Registry) snapshot {
		var order []string
		for _, tb := range reg.Tables() {
			order = append(order, tb.Name)
		}
		return snapshot{
			fingerprint: reg.Fingerprint(),
			uniques:     fmt.Sprint(reg.Table("notes").Uniques, reg.Table("lists").Uniques),
			fks:         fmt.Sprint(reg.Table("notes").ForeignKeys, reg.Table("todos").ForeignKeys),
			order:       strings.Join(order, " "),
		}
	}
	for _, kind := range dbtest.Kinds {
		for _, who := range []string{"client", "server", "peer"} {
			t.Run(kind+"/"+who, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				db := dbtest.Open(t, kind)
				if err := testmodels.CreateSchema(ctx, db); err != nil {
					t.Fatal(err)
				}
				exec(t, db, "CREATE UNIQUE INDEX notes_body_idx ON notes (body)")
				reg, err := dbsync.Track(db, synctest.Models()...)
				if err != nil {
					t.Fatal(err)
				}
				want := snap(reg)
				var used *dbsync.Registry
				switch who {
				case "client":
					c, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync"})
					if err != nil {
						t.Fatal(err)
					}
					used = c.Registry()
				case "server":
					s, err := server.New(ctx, db, reg, &server.Config{AuthorizeRegister: server.OpenRegistration})
					if err != nil {
						t.Fatal(err)
					}
					used = s.Registry()
				case "peer":
					n, err := peer.New(ctx, db, reg, nil)
					if err != nil {
						t.Fatal(err)
					}
					used = n.Registry()
				}
				if got := snap(reg); got != want {
					t.Fatalf("New changed the caller's registry:\nbefore %+v\nafter  %+v", want, got)
				}
				if used == reg {
					t.Fatal("New uses the caller's registry itself")
				}
				if u := fmt.Sprint(used.Table("notes").Uniques); who != "peer" && u != "[[body]]" {
					t.Fatalf("the registry in use lacks the catalog's unique index: %s", u)
				}
			})
		}
	}
}

// Clone shares nothing mutable: recording constraints in the clone leaves
// the original alone, and the clone's dependency order follows its own
// foreign keys.
func TestRegistryClone(t *testing.T) {
	db := dbtest.SQLite(t)
	reg, err := dbsync.Track(db, (*testmodels.Note)(nil), (*testmodels.List)(nil))
	if err != nil {
		t.Fatal(err)
	}
	order := func(r *dbsync.Registry) string {
		var names []string
		for _, tb := range r.Tables() {
			names = append(names, fmt.Sprintf("%s:%d", tb.Name, tb.Rank()))
		}
		return strings.Join(names, " ")
	}
	c := reg.Clone().WithCatalog(dbsync.Catalog{
		Uniques:     map[string][][]string{"notes": {{"body"}}},
		ForeignKeys: map[string][]protocol.ForeignKey{"notes": {{Column: "count", RefTable: "lists"}}},
	})
	if u, fk := reg.Table("notes").Uniques, reg.Table("notes").ForeignKeys; len(u) != 0 || len(fk) != 0 {
		t.Fatalf("original changed: uniques %v, foreign keys %v", u, fk)
	}
	if got := order(reg); got != "notes:0 lists:1" {
		t.Fatalf("original order %s", got)
	}
	if got := order(c); got != "lists:0 notes:1" {
		t.Fatalf("clone order %s", got)
	}
	if c.Fingerprint() != reg.Fingerprint() || len(c.Table("notes").Uniques) != 1 || len(c.Table("notes").ForeignKeys) != 1 {
		t.Fatalf("clone: %v %v", c.Table("notes").Uniques, c.Table("notes").ForeignKeys)
	}
	if (*dbsync.Registry)(nil).Clone() != nil {
		t.Fatal("clone of nil")
	}
}
