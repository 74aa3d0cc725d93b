package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// pushFn pushes p as n, whole or in chunks of one operation.
func (f *fixture) pushFn(n node, chunked bool) func(p *push) error {
	return f.pushFnTo(f.Srv, n, chunked)
}

// pushFnTo is pushFn to srv (the server, or a view of it).
func (f *fixture) pushFnTo(srv *server.Server, n node, chunked bool) func(p *push) error {
	return func(p *push) error {
		var err error
		if chunked {
			_, err = f.commitChunkedTo(srv, n, &p.req)
		} else {
			_, err = srv.Push(ctx, n.id, &p.req)
		}
		return err
	}
}

// viewWithout returns the view of the server (Server.ForSchema) that
// serves a node whose schema leaves the tables out.
func (f *fixture) viewWithout(tables ...string) *server.Server {
	f.t.Helper()
	ns := f.Reg.NodeSchema()
	ns.Tables = slices.DeleteFunc(ns.Tables, func(t protocol.SchemaTable) bool { return slices.Contains(tables, t.Name) })
	view, err := f.Srv.ForSchema(ns.Fingerprint(), ns.String())
	if err != nil {
		f.t.Fatal(err)
	}
	return view
}

// direct writes to the server database, as an administrator would, and
// seals them into a version.
func (f *fixture) direct(queries ...string) {
	f.t.Helper()
	for _, q := range queries {
		if _, err := f.DB.ExecContext(ctx, q); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.Srv.Seal(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// TestScopeChildCannotOpenParent: a row of a node's own whose foreign key
// points at another principal's row (members are OwnedBy user_id, and a
// membership would make the project readable, then writable through
// MemberOf) is refused, whole and chunked, and nothing of the project
// reaches the node; sharing a project one reads stays possible.
func TestScopeChildCannotOpenParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				rules := server.Scopes{
					"projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("members", "project_id", "user_id")),
					"members":  server.OwnedBy("user_id"),
					"tasks":    server.ThroughParent("project_id"),
					"tags":     server.Global(),
				}
				f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules},
					testmodels.CreateScoped, testmodels.Scoped()...)
				ann, cid := f.registerAs("ann"), f.registerAs("cid")
				if err := f.pushFn(ann, chunked)(newPush(nil).project(models.Insert, 1, "ann", "ann's secret").
					task(models.Insert, 1, 1, "ann's task").project(models.Insert, 2, "ann", "shared")); err != nil {
					t.Fatal(err)
				}
				before := f.state()
				var se *dbsync.ScopeError
				err := f.pushFn(cid, chunked)(newPush(ptr(f.latest())).member(models.Insert, 9, 1, "cid"))
				if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "members", PK: "9"}) {
					t.Fatalf("cid's membership of ann's project: %v, want a ScopeError naming members 9", err)
				}
				f.mustUnchanged(before, "membership of another's project")
				if got := repairKeys(t, f, cid); len(got["projects"]) != 0 || len(got["tasks"]) != 0 {
					t.Fatalf("cid repairs %v", got)
				}
				// A row moved onto another's project: refused the same.
				if err := f.pushFn(cid, chunked)(newPush(ptr(f.latest())).member(models.Insert, 10, 3, "cid").project(models.Insert, 3, "cid", "own")); err != nil {
					t.Fatalf("cid's membership of its own project: %v", err)
				}
				if err := f.pushFn(cid, chunked)(newPush(ptr(f.latest())).member(models.Update, 10, 1, "cid")); !errors.As(err, &se) {
					t.Fatalf("cid moves its membership to ann's project: %v", err)
				}
				// An administrator gives cid's project 3 to ann: cid's
				// membership of it, a reference the push does not set, may
				// still be rewritten.
				if _, err := f.DB.ExecContext(ctx, "UPDATE projects SET owner_id = 'ann' WHERE id = 3"); err != nil {
					t.Fatal(err)
				}
				if err := f.pushFn(cid, chunked)(newPush(ptr(f.latest())).member(models.Update, 10, 3, "cid")); err != nil {
					t.Fatalf("cid rewrites its membership, its reference unchanged: %v", err)
				}
				// Ann deletes her project 1: nothing of cid's references it.
				if _, err := f.Srv.Push(ctx, ann.id, &newPush(ptr(f.latest())).del("tasks", 1).del("projects", 1).req); err != nil {
					t.Fatalf("ann deletes her project: %v", err)
				}
			})
		}
	}
}

// TestScopeChildCannotOpenParentRead: with members OwnedBy user_id and
// projects OwnedBy owner_id only, the membership refused above would make
// ann's project readable through pulls and queries.
func TestScopeChildCannotOpenParentRead(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind) // synctest.ScopeRules
			ann, cid := f.registerAs("ann"), f.registerAs("cid")
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(nil).project(models.Insert, 1, "ann", "ann's secret").req); err != nil {
				t.Fatal(err)
			}
			var se *dbsync.ScopeError
			if _, err := f.Srv.Push(ctx, cid.id, &newPush(ptr(f.latest())).member(models.Insert, 9, 1, "cid").req); !errors.As(err, &se) {
				t.Fatalf("cid's membership of ann's project: %v, want a ScopeError", err)
			}
			msgs := mustPull(t, f.Srv, cid.id, &protocol.PullRequest{LatestVersionID: ptr(0),
				Held: map[string][]string{"projects": {}, "members": {}, "tasks": {}}})
			for _, m := range msgs {
				for _, r := range m.Rows {
					if strings.Contains(string(r), "ann's secret") {
						t.Errorf("cid pulls ann's project: %s %s", m.Type, r)
					}
				}
			}
			resp, err := f.Srv.Query(ctx, cid.id, &protocol.QueryRequest{Table: "projects"})
			if err != nil || len(resp.Rows) != 0 {
				t.Errorf("cid queries projects: %v %s", err, resp.Rows)
			}
		})
	}
}

type scopeCat struct {
	bun.BaseModel `bun:"table:scope_cats"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type scopeDoc struct {
	bun.BaseModel `bun:"table:scope_docs"`
	ID            int64   `bun:"id,pk,autoincrement"`
	OwnerID       *string `bun:"owner_id"`
	Body          string  `bun:"body,notnull"`
}

type scopeShare struct {
	bun.BaseModel `bun:"table:scope_shares"`
	ID            int64     `bun:"id,pk,autoincrement"`
	DocID         int64     `bun:"doc_id,notnull"`
	UserID        string    `bun:"user_id,notnull"`
	Doc           *scopeDoc `bun:"rel:belongs-to,join:doc_id=id,on_delete:CASCADE"`
}

type scopeNote struct {
	bun.BaseModel `bun:"table:scope_notes"`
	ID            int64     `bun:"id,pk,autoincrement"`
	CatID         int64     `bun:"cat_id,notnull"`
	Body          string    `bun:"body,notnull"`
	Cat           *scopeCat `bun:"rel:belongs-to,join:cat_id=id,on_delete:CASCADE"`
}

// scopeComment is a user's own row referencing a doc (not through its
// rule): a reference that would open the doc to its author.
type scopeComment struct {
	bun.BaseModel `bun:"table:scope_comments"`
	ID            int64     `bun:"id,pk,autoincrement"`
	AuthorID      string    `bun:"author_id,notnull"`
	DocID         int64     `bun:"doc_id,notnull"`
	Body          string    `bun:"body,notnull"`
	Doc           *scopeDoc `bun:"rel:belongs-to,join:doc_id=id,on_delete:CASCADE"`
}

var docModels = []any{(*scopeCat)(nil), (*scopeDoc)(nil), (*scopeShare)(nil), (*scopeNote)(nil), (*scopeComment)(nil)}

func newDocFixture(t *testing.T, kind string) *fixture {
	t.Helper()
	create := func(ctx context.Context, db bun.IDB) error {
		for _, m := range docModels {
			if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	rules := server.Scopes{
		"scope_cats":     server.Global(),
		"scope_docs":     server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("scope_shares", "doc_id", "user_id")),
		"scope_shares":   server.ThroughParent("doc_id"),
		"scope_notes":    server.ThroughParent("cat_id"),
		"scope_comments": server.OwnedBy("author_id"),
	}
	return newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, create, docModels...)
}

// TestScopeViewCannotOpenParent: a node that announces a schema without
// scope_docs (X-Dbsync-Tables) is served a view whose scope_comments has
// lost its foreign key to scope_docs, not the column. The check that a
// reference a push sets points at a row the node reads took the view's
// foreign keys: mal's comment on bob's private doc was accepted through
// the view, after which mal's principal read the doc (pulls, repairs,
// queries) and bob could not delete it (refused, out of mal's scope). It
// takes the server's now: refused as with the full schema, whole and
// chunked, nothing written; a comment on mal's own doc passes.
func TestScopeViewCannotOpenParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				f := newDocFixture(t, kind)
				bob, mal := f.registerAs("bob"), f.registerAs("mal")
				doc := func(id int64, owner string) *push {
					return newPush(ptr(f.latest())).op("scope_docs", fmt.Sprint(id), models.Insert,
						rowJSON(map[string]any{"id": id, "owner_id": owner, "body": owner + "'s doc"}))
				}
				comment := func(id, doc int64) *push {
					return newPush(ptr(f.latest())).op("scope_comments", fmt.Sprint(id), models.Insert,
						rowJSON(map[string]any{"id": id, "author_id": "mal", "doc_id": doc, "body": "hi"}))
				}
				if err := f.pushFn(bob, false)(doc(7, "bob")); err != nil {
					t.Fatal(err)
				}
				if err := f.pushFn(mal, false)(doc(8, "mal")); err != nil {
					t.Fatal(err)
				}
				view := f.viewWithout("scope_docs", "scope_shares")
				for name, push := range map[string]func(p *push) error{"full schema": f.pushFn(mal, chunked), "view": f.pushFnTo(view, mal, chunked)} {
					before := f.state()
					var se *dbsync.ScopeError
					if err := push(comment(1, 7)); !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "scope_comments", PK: "1"}) {
						t.Fatalf("%s: mal's comment on bob's doc: %v, want a ScopeError naming scope_comments 1", name, err)
					}
					f.mustUnchanged(before, name)
				}
				if err := f.pushFnTo(view, mal, chunked)(comment(2, 8)); err != nil {
					t.Fatalf("view: mal's comment on its own doc: %v", err)
				}
				if resp, err := f.Srv.Query(ctx, mal.id, &protocol.QueryRequest{Table: "scope_docs"}); err != nil || len(resp.Rows) != 1 || !strings.Contains(string(resp.Rows[0]), "mal's doc") {
					t.Fatalf("mal queries scope_docs: %v %s, want its own doc alone", err, resp.Rows)
				}
				if err := f.pushFn(bob, false)(newPush(ptr(f.latest())).op("scope_docs", "7", models.Delete, nil)); err != nil {
					t.Fatalf("bob deletes his doc: %v", err)
				}
			})
		}
	}
}

// TestScopeNullOwner: a member may not set the owner of a row that has
// none (NULL) any more than change another's, whole and chunked.
func TestScopeNullOwner(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				f := newDocFixture(t, kind)
				bob := f.registerAs("bob")
				f.direct(
					"INSERT INTO scope_docs (id, owner_id, body) VALUES (1, NULL, 'team doc'), (2, 'ann', 'ann doc'), (3, 'bob', 'bob doc')",
					"INSERT INTO scope_shares (id, doc_id, user_id) VALUES (1, 1, 'bob'), (2, 2, 'bob')",
				)
				doc := func(id int64, owner any, body string) *push {
					return newPush(ptr(f.latest())).op("scope_docs", fmt.Sprint(id), models.Update, rowJSON(map[string]any{"id": id, "owner_id": owner, "body": body}))
				}
				send := f.pushFn(bob, chunked)
				var se *dbsync.ScopeError
				for _, tc := range []struct {
					name  string
					p     *push
					taken bool
				}{
					{"another's doc", doc(2, "bob", "mine"), true},
					{"a doc without owner", doc(1, "bob", "mine now"), true},
					{"the body of a doc without owner", doc(1, nil, "edited"), false},
				} {
					before := f.state()
					err := send(tc.p)
					if tc.taken && !errors.As(err, &se) {
						t.Errorf("%s: %v, want a ScopeError", tc.name, err)
					}
					if tc.taken {
						f.mustUnchanged(before, tc.name)
					} else if err != nil {
						t.Errorf("%s: %v", tc.name, err)
					}
				}
			})
		}
	}
}

// TestScopeGlobalParentChildren: the rows in scope through a Global
// (read-only) parent are read-only too, as through a ReadOnly one.
func TestScopeGlobalParentChildren(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newDocFixture(t, kind)
			bob := f.registerAs("bob")
			f.direct("INSERT INTO scope_cats (id, name) VALUES (1, 'c')", "INSERT INTO scope_notes (id, cat_id, body) VALUES (1, 1, 'n')")
			note := func(id int64, cmd models.Command) *push {
				return newPush(ptr(f.latest())).op("scope_notes", fmt.Sprint(id), cmd, rowJSON(map[string]any{"id": id, "cat_id": 1, "body": "bob's"}))
			}
			var se *dbsync.ScopeError
			for name, p := range map[string]*push{
				"insert": note(2, models.Insert),
				"update": note(1, models.Update),
				"delete": newPush(ptr(f.latest())).op("scope_notes", "1", models.Delete, nil),
			} {
				before := f.state()
				if _, err := f.Srv.Push(ctx, bob.id, &p.req); !errors.As(err, &se) {
					t.Errorf("%s of a note of a global category: %v, want a ScopeError", name, err)
				}
				f.mustUnchanged(before, name)
			}
			if got := repairKeys(t, f, bob); len(got["scope_notes"]) != 1 {
				t.Errorf("bob reads notes %v, want note 1", got["scope_notes"])
			}
		})
	}
}

// TestScopeBeforeRebase: a push behind that names a row outside the
// node's scope is refused as out of scope, not pull_needed naming the row
// (which would tell the node when another user's rows changed).
func TestScopeBeforeRebase(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			ann, cid := f.registerAs("ann"), f.registerAs("cid")
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(nil).project(models.Insert, 1, "ann", "a").project(models.Insert, 2, "ann", "b").req); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.Push(ctx, cid.id, &newPush(ptr(1)).project(models.Insert, 3, "cid", "c").req); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(ptr(2)).project(models.Update, 2, "ann", "b2").req); err != nil {
				t.Fatal(err)
			}
			for _, k := range []int64{1, 2} { // unchanged, changed since version 2
				before := f.state()
				_, err := f.Srv.Push(ctx, cid.id, &newPush(ptr(2)).project(models.Update, k, "cid", "x").req)
				var se *dbsync.ScopeError
				if !errors.As(err, &se) {
					t.Errorf("cid's push behind to ann's project %d: %v, want a ScopeError", k, err)
				}
				f.mustUnchanged(before, "probe")
			}
			status, body, _ := httpPush(t, f.Server, cid, &newPush(ptr(2)).project(models.Update, 2, "cid", "x").req)
			if status != 403 || body.Error.Code != protocol.CodeOutOfScope {
				t.Errorf("over HTTP: %d %+v, want 403 out_of_scope", status, body)
			}
			// cid's own row, changed by no one since: still rebased.
			if _, err := f.Srv.Push(ctx, cid.id, &newPush(ptr(2)).project(models.Update, 3, "cid", "c2").req); err != nil {
				t.Errorf("cid's push behind to its own project: %v", err)
			}
		})
	}
}
