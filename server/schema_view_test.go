package server_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// viewFolder and viewDoc are a parent and a child whose foreign key is
// nullable, so that an older node may not know it (ForSchema). A doc's
// title is unique, so that a chunked push stages its keys.
type viewFolder struct {
	bun.BaseModel `bun:"table:folders"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

type viewDoc struct {
	bun.BaseModel `bun:"table:docs"`

	ID       int64       `bun:"id,pk,autoincrement"`
	FolderID *int64      `bun:"folder_id"`
	Title    string      `bun:"title,notnull,unique"`
	Folder   *viewFolder `bun:"rel:belongs-to,join:folder_id=id"`
}

func (p *push) folder(cmd models.Command, id int64) *push {
	return p.op("folders", strconv.FormatInt(id, 10), cmd, rowJSON(map[string]any{"id": id, "name": "f"}))
}

func (p *push) doc(cmd models.Command, row map[string]any) *push {
	return p.op("docs", strconv.FormatInt(row["id"].(int64), 10), cmd, rowJSON(row))
}

// TestSchemaViewOrphans: a push deleting a parent whose child it rewrites
// passes the orphan check only when the rewrite can change the child's
// reference: a node served a view (ForSchema) that does not know the
// child's foreign-key column leaves it as it is, and its push is refused,
// in one request or in chunks, nothing written: a *dbsync.ScopeError
// naming the parent (no pull can show that node the reference, so it can
// only give its delete up, merge.md E1).
func TestSchemaViewOrphans(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			mods := []any{(*viewFolder)(nil), (*viewDoc)(nil)}
			f := &fixture{t: t, kind: kind, Server: synctest.NewServerWith(t, dbtest.Open(t, kind), synctest.CreateTables(mods...), mods, nil)}
			older := f.Srv.Registry().NodeSchema()
			for i, tb := range older.Tables {
				if tb.Name == "docs" {
					older.Tables[i].Columns = slices.DeleteFunc(slices.Clone(tb.Columns), func(c protocol.SchemaColumn) bool { return c.Name == "folder_id" })
				}
			}
			view, err := f.Srv.ForSchema(older.Fingerprint(), older.String())
			if err != nil {
				t.Fatal(err)
			}
			if view == f.Srv || view.Registry().Table("docs").Column("folder_id") != nil {
				t.Fatal("no view without docs.folder_id")
			}
			n := f.register()
			var id int64 = 1
			seed := func() {
				t.Helper()
				latest := f.latest()
				p := newPush(&latest).folder(models.Insert, id).doc(models.Insert, map[string]any{"id": id, "folder_id": id, "title": "t" + strconv.FormatInt(id, 10)})
				if _, err := f.Srv.Push(ctx, n.id, &p.req); err != nil {
					t.Fatal(err)
				}
			}
			cases := []struct {
				name    string
				srv     *server.Server
				p       func(id int64) *push
				chunked bool
				scope   bool // refused with a ScopeError naming the parent
			}{
				{name: "view rewrites the child", srv: view, scope: true,
					p: func(id int64) *push {
						return newPush(nil).doc(models.Update, map[string]any{"id": id, "title": "x" + strconv.FormatInt(id, 10)}).del("folders", id)
					}},
				{name: "view rewrites the child, chunked", srv: view, chunked: true, scope: true,
					p: func(id int64) *push {
						return newPush(nil).doc(models.Update, map[string]any{"id": id, "title": "x" + strconv.FormatInt(id, 10)}).del("folders", id)
					}},
				{name: "view deletes the child", srv: view, chunked: true,
					p: func(id int64) *push {
						return newPush(nil).op("docs", strconv.FormatInt(id, 10), models.Delete, nil).del("folders", id)
					}},
				{name: "full schema re-parents the child", srv: f.Srv,
					p: func(id int64) *push {
						return newPush(nil).doc(models.Update, map[string]any{"id": id, "folder_id": nil, "title": "y" + strconv.FormatInt(id, 10)}).del("folders", id)
					}},
				{name: "full schema re-parents the child, chunked", srv: f.Srv, chunked: true,
					p: func(id int64) *push {
						return newPush(nil).doc(models.Update, map[string]any{"id": id, "folder_id": nil, "title": "y" + strconv.FormatInt(id, 10)}).del("folders", id)
					}},
			}
			for _, c := range cases {
				seed()
				p := c.p(id)
				latest := f.latest()
				p.req.LatestVersionID = &latest
				before := f.state()
				if c.chunked {
					bodies := chunksOf(t, &p.req, 1)
					for _, b := range bodies {
						if _, err := c.srv.StagePushChunk(ctx, n.id, b); err != nil {
							t.Fatalf("%s: stage: %v", c.name, err)
						}
					}
					_, err = c.srv.CommitPush(ctx, n.id, commitOf(&p.req, bodies))
				} else {
					_, err = c.srv.Push(ctx, n.id, &p.req)
				}
				var se *dbsync.ScopeError
				switch {
				case !c.scope && err != nil:
					t.Errorf("%s: %v", c.name, err)
				case c.scope && (!errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0].Table != "folders" || se.Entries[0].PK != strconv.FormatInt(id, 10)):
					t.Errorf("%s: %v, want a ScopeError naming folders %d", c.name, err, id)
				case c.scope:
					f.mustUnchanged(before, c.name)
				}
				id++
			}
		})
	}
}

// TestForSchemaBounds: ForSchema keeps the last 64 views used (a view
// looked up again stays, the least recently used goes), and a SchemaError
// lists at most dbsync.MaxSchemaDifferences differences, counting the
// others in More.
func TestForSchemaBounds(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewLocalServer(t, kind, nil).Srv
			schemas := synctest.OlderSchemas(srv.Registry())
			if len(schemas) != 65 {
				t.Fatalf("%d schemas, want 65", len(schemas))
			}
			held := func(s string) bool {
				t.Helper()
				v, err := srv.LookupSchema("", s)
				if err != nil {
					t.Fatal(err)
				}
				return v != nil
			}
			for i, s := range schemas[:64] {
				if _, err := srv.ForSchema("", s); err != nil {
					t.Fatalf("schema %d: %v", i, err)
				}
			}
			if !held(schemas[0]) { // now the most recently used
				t.Fatal("view 0 not held")
			}
			if _, err := srv.ForSchema("", schemas[64]); err != nil {
				t.Fatal(err)
			}
			n := 0
			for i, s := range schemas {
				if held(s) {
					n++
				} else if i != 1 {
					t.Errorf("view %d dropped, want view 1 (the least recently used)", i)
				}
			}
			if n != 64 {
				t.Fatalf("%d views held, want 64", n)
			}

			// 100 columns the server lacks: 32 listed, 68 more.
			newer := srv.Registry().NodeSchema()
			lists := newer.Table("lists")
			for i := range 100 {
				lists.Columns = append(lists.Columns, protocol.SchemaColumn{Name: "extra" + strconv.Itoa(i), Class: lists.Column("name").Class})
			}
			newer.Normalize()
			_, err := srv.ForSchema("", newer.String())
			var se *dbsync.SchemaError
			if !errors.As(err, &se) || len(se.Differences) != dbsync.MaxSchemaDifferences || se.More != 100-dbsync.MaxSchemaDifferences {
				t.Fatalf("%v, want a SchemaError listing %d differences and %d more", err, dbsync.MaxSchemaDifferences, 100-dbsync.MaxSchemaDifferences)
			}
			if !strings.Contains(se.Error(), "and 68 more") {
				t.Fatalf("message %q does not count the others", se.Error())
			}
		})
	}
}
