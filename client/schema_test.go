package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// Release 1 of an application tracks projects; release 2 adds a nullable
// and a defaulted column to them, and a table of labels that reference
// them.
type projectV1 struct {
	bun.BaseModel `bun:"table:projects"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

type projectV2 struct {
	bun.BaseModel `bun:"table:projects"`

	ID       int64   `bun:"id,pk,autoincrement"`
	Name     string  `bun:"name,notnull"`
	Note     *string `bun:"note"`
	Priority int64   `bun:"priority,notnull,default:0"`
}

type labelV2 struct {
	bun.BaseModel `bun:"table:labels"`

	ID        int64      `bun:"id,pk,autoincrement"`
	ProjectID int64      `bun:"project_id,notnull"`
	Text      string     `bun:"text,notnull"`
	Project   *projectV2 `bun:"rel:belongs-to,join:project_id=id"`
}

var (
	modelsV1 = []any{(*projectV1)(nil)}
	modelsV2 = []any{(*projectV2)(nil), (*labelV2)(nil)}
)

func createV1(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*projectV1)(nil)).IfNotExists().Exec(ctx)
	return err
}

// migrateV2 is release 2's migration, on a database of release 1: the
// same on the server and on a node.
func migrateV2(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		`ALTER TABLE projects ADD COLUMN note VARCHAR`,
		`ALTER TABLE projects ADD COLUMN priority BIGINT NOT NULL DEFAULT 0`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	_, err := db.NewCreateTable().Model((*labelV2)(nil)).WithForeignKeys().Exec(ctx)
	return err
}

func noSchema(context.Context, bun.IDB) error { return nil }

// restart opens a client of release models on db (an application started
// again), reaching srv; chunk is its Config.PushChunkOperations, and
// chunks counts the push chunks it sends.
func restart(t *testing.T, srv *synctest.Server, db *bun.DB, chunk int, chunks *atomic.Int64, models ...any) *client.Client {
	t.Helper()
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/push-chunk") && chunks != nil {
			chunks.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, err := client.New(context.Background(), db, reg, &client.Config{URL: srv.URL, HTTPClient: hc, PushChunkOperations: chunk})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func execSQL(t *testing.T, db bun.IDB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func syncOK(t *testing.T, c *client.Client) *client.SyncResult {
	t.Helper()
	res, err := c.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// An old node and a new node sync side by side through the server's
// additive migration (a nullable and a defaulted column, a new table):
// the old node neither sees nor disturbs what it does not know — its
// insert leaves the new columns to their defaults, its update keeps their
// server values — and when it upgrades, its next sync backfills the new
// columns and table for the rows it holds, before it pushes a change it
// made under release 1, which then keeps the server's values too.
func TestSchemaUpgradeSideBySide(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createV1, modelsV1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createV1, modelsV1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createV1, modelsV1, nil)
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			// The server migrates to release 2 and restarts; b upgrades.
			if err := migrateV2(ctx, serverDB); err != nil {
				t.Fatal(err)
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, modelsV2, nil)
			if err := migrateV2(ctx, dbB); err != nil {
				t.Fatal(err)
			}
			newB := restart(t, srv2, dbB, 0, nil, modelsV2...)
			// The old node pushes in chunks of one operation: a chunked
			// push is served the same view.
			var chunks atomic.Int64
			oldA := restart(t, srv2, dbA, 1, &chunks, modelsV1...)
			// Its first sync pulls the backfill, and only that: nothing to
			// push, nothing newer.
			if res := syncOK(t, newB); len(res.Pulls) != 1 || len(res.Pushes) != 0 {
				t.Fatalf("the upgraded node's first sync: %v", res)
			}
			execSQL(t, dbB, "UPDATE projects SET note = 'b note', priority = 5")
			execSQL(t, dbB, "INSERT INTO labels (project_id, text) VALUES (1, 'urgent')")
			syncOK(t, newB)

			// The old node pulls what b wrote, without the new columns,
			// and writes without them.
			if res := syncOK(t, oldA); res.VersionID == 0 {
				t.Fatalf("old node's sync: %v", res)
			}
			execSQL(t, dbA, "UPDATE projects SET name = 'one, renamed by a' WHERE id = 1")
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('three')")
			if res := syncOK(t, oldA); len(res.Pushes) != 1 || res.Pushes[0].Operations != 2 || chunks.Load() != 2 {
				t.Fatalf("the old node's push: %+v in %d chunks", res.Pushes, chunks.Load())
			}
			var got []projectV2
			if err := serverDB.NewSelect().Model(&got).Order("id").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0].Name != "one, renamed by a" || got[0].Note == nil || *got[0].Note != "b note" || got[0].Priority != 5 {
				t.Fatalf("an old node's update must keep the new columns' server values: %+v", got)
			}
			if got[2].Name != "three" || got[2].Note != nil || got[2].Priority != 0 {
				t.Fatalf("an old node's insert must leave the new columns to their defaults: %+v", got[2])
			}
			// Its queries and repairs leave them out too; a query of a
			// table it does not know is refused.
			page, err := oldA.Query(ctx, &protocol.QueryRequest{Table: "projects", Equal: map[string]string{"id": "1"}})
			if err != nil || len(page.Rows) != 1 || string(page.Rows[0]) != `{"id":1,"name":"one, renamed by a"}` {
				t.Fatalf("old node's query: %v, %v", page, err)
			}
			if _, err := oldA.Query(ctx, &protocol.QueryRequest{Table: "labels"}); !errors.Is(err, dbsync.ErrUnknownTable) {
				t.Fatalf("old node's query of a new table: %v", err)
			}
			if _, err := oldA.Repair(ctx, nil); err != nil {
				t.Fatal(err)
			}
			syncOK(t, newB)

			// a changes a row under release 1, then upgrades: the sync
			// backfills before it pushes.
			execSQL(t, dbA, "UPDATE projects SET name = 'two, renamed by a' WHERE id = 2")
			if err := migrateV2(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, modelsV2...)
			res := syncOK(t, newA)
			if len(res.Pulls) == 0 || len(res.Pushes) == 0 {
				t.Fatalf("the upgraded node's sync must pull its backfill, then push: %v", res)
			}
			syncOK(t, newB)
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if want["projects"][1] != `{"id":2,"name":"two, renamed by a","note":"b note","priority":5}` {
				t.Fatalf("server after the upgraded node's push: %v", want["projects"])
			}
			for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Errorf("node %s differs from the server:\n%s", name, d)
				}
			}
			// Nothing is left to backfill: the next sync only checks.
			if res := syncOK(t, newA); res.Changed() {
				t.Fatalf("a second sync changed something: %v", res)
			}
		})
	}
}

// Differences the server cannot serve are refused, each named: a column
// the server does not have (a node newer than the server, or a column
// dropped or renamed there), a column whose type differs, a table the
// server does not track, and a column the server requires (NOT NULL
// without a default) that a node pushing the table does not know.
func TestSchemaNonAdditiveRefused(t *testing.T) {
	t.Parallel()
	type projectTyped struct {
		bun.BaseModel `bun:"table:projects"`

		ID       int64   `bun:"id,pk,autoincrement"`
		Name     int64   `bun:"name,notnull"`
		Note     *string `bun:"note"`
		Priority int64   `bun:"priority,notnull,default:0"`
		Extra    string  `bun:"extra"`
	}
	type other struct {
		bun.BaseModel `bun:"table:others"`

		ID string `bun:"id,pk"`
	}
	type projectRequired struct {
		bun.BaseModel `bun:"table:projects"`

		ID    int64  `bun:"id,pk,autoincrement"`
		Name  string `bun:"name,notnull"`
		Owner string `bun:"owner,notnull"`
	}
	cases := []struct {
		name   string
		create func(context.Context, bun.IDB) error
		server []any
		node   []any
		want   []protocol.SchemaDifference
	}{
		{
			name: "node newer, type change, unknown table", create: createV1, server: modelsV1,
			node: []any{(*projectTyped)(nil), (*other)(nil)},
			want: []protocol.SchemaDifference{
				// A table, as a column, the server lacks says why it may.
				{Table: "others", Problem: "dropped or renamed there, or the node is newer"},
				{Table: "projects", Column: "extra", Node: "string", Problem: "dropped or renamed there, or the node is newer"},
				{Table: "projects", Column: "name", Node: "int", Server: "string"},
				{Table: "projects", Column: "note", Node: "string"},
				{Table: "projects", Column: "priority", Node: "int"},
			},
		},
		{
			name: "required column",
			create: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewCreateTable().Model((*projectRequired)(nil)).Exec(ctx)
				return err
			},
			server: []any{(*projectRequired)(nil)}, node: modelsV1,
			want: []protocol.SchemaDifference{{Table: "projects", Column: "owner", Server: "string"}},
		},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				srv := synctest.NewServerWith(t, dbtest.Open(t, kind), tc.create, tc.server, nil)
				// The node's tables are its models' (client.New refuses a
				// column its table lacks).
				db := dbtest.Open(t, kind)
				reg, err := dbsync.Track(db, tc.node...)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range tc.node {
					if _, err := db.NewCreateTable().Model(m).IfNotExists().Exec(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				c, err := client.New(context.Background(), db, reg, &client.Config{URL: srv.URL})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Register(context.Background(), nil)
				var se *dbsync.SchemaError
				if !errors.As(err, &se) || !errors.Is(err, dbsync.ErrSchemaMismatch) {
					t.Fatalf("got %v, want a *dbsync.SchemaError", err)
				}
				if len(se.Differences) != len(tc.want) {
					t.Fatalf("differences %v, want %v", se.Differences, tc.want)
				}
				for i, w := range tc.want {
					d := se.Differences[i]
					if d.Table != w.Table || d.Column != w.Column || d.Node != w.Node || d.Server != w.Server || d.Problem == "" ||
						!strings.Contains(d.Problem, w.Problem) {
						t.Errorf("difference %d: %+v, want %+v", i, d, w)
					}
				}
				if msg := err.Error(); !strings.Contains(msg, tc.want[0].Table) {
					t.Errorf("message %q does not name the table", msg)
				}
			})
		}
	}
}

// On a server with scopes, an older node that does not track tasks syncs
// its projects within its scope, and when it upgrades, the backfill
// brings only the tasks of the projects it may read.
func TestSchemaUpgradeScoped(t *testing.T) {
	t.Parallel()
	older := []any{(*testmodels.Tag)(nil), (*testmodels.Project)(nil), (*testmodels.Member)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv := synctest.NewServerWith(t, serverDB, testmodels.CreateScoped, testmodels.Scoped(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()})
			execSQL(t, serverDB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'alice', 'hers'), (2, 'bob', 'his')")
			execSQL(t, serverDB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'her task'), (2, 2, 'his task')")
			db := dbtest.Open(t, kind)
			old := synctest.NewClientAs(t, srv, "alice", "Bearer alice", db, testmodels.CreateScoped, older, nil)
			syncOK(t, old.Client)
			execSQL(t, db, "UPDATE projects SET name = 'hers, renamed' WHERE id = 1")
			syncOK(t, old.Client)

			reg, err := dbsync.Track(db, testmodels.Scoped()...)
			if err != nil {
				t.Fatal(err)
			}
			upgraded, err := client.New(ctx, db, reg, &client.Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			syncOK(t, upgraded)
			var titles []string
			if err := db.NewSelect().Table("tasks").Column("title").Scan(ctx, &titles); err != nil {
				t.Fatal(err)
			}
			if len(titles) != 1 || titles[0] != "her task" {
				t.Fatalf("the backfill brought tasks %v, want only her task", titles)
			}
			var name string
			if err := serverDB.NewSelect().Table("projects").Column("name").Where("id = 1").Scan(ctx, &name); err != nil || name != "hers, renamed" {
				t.Fatalf("server's project 1: %q, %v", name, err)
			}
		})
	}
}

// A node upgrades its schema while the trim left it behind: the sync's
// backfill pull is answered reset_required, so it resets instead; the
// reset brings the new columns and table with every row, sets the new
// columns of the rows the node changed under release 1 to the server's
// values before merging (E3), keeps those changes, and records the
// schema: nothing is left to backfill.
func TestSchemaUpgradeAfterTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			cfg := trimConfig(clk)
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createV1, modelsV1, cfg)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createV1, modelsV1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createV1, modelsV1, nil)
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			// The server and b upgrade; b fills the new columns and table.
			if err := migrateV2(ctx, serverDB); err != nil {
				t.Fatal(err)
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, modelsV2, cfg)
			if err := migrateV2(ctx, dbB); err != nil {
				t.Fatal(err)
			}
			newB := restart(t, srv2, dbB, 0, nil, modelsV2...)
			syncOK(t, newB)
			execSQL(t, dbB, "UPDATE projects SET note = 'b note', priority = 5")
			execSQL(t, dbB, "INSERT INTO labels (project_id, text) VALUES (1, 'urgent')")
			syncOK(t, newB)

			// a, offline under release 1, changes a row and adds one.
			execSQL(t, dbA, "UPDATE projects SET name = 'one, renamed by a' WHERE id = 1")
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('three')")
			clk.Advance(25 * time.Hour)
			execSQL(t, dbB, "UPDATE projects SET priority = 6 WHERE id = 2")
			syncOK(t, newB)
			syncOK(t, newB)
			if res, err := srv2.Srv.Trim(ctx); err != nil || res.RetiredNodes != 1 {
				t.Fatalf("trim: %+v %v, want a retired", res, err)
			}

			// a upgrades, and syncs.
			if err := migrateV2(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, modelsV2...)
			res := syncOK(t, newA)
			if res.Reset == nil || res.Reset.Kept != 2 || len(res.Pushes) != 1 || res.Pushes[0].Operations != 2 {
				t.Fatalf("the upgraded node's sync must reset and push its 2 changes: %v", res)
			}
			syncOK(t, newB)
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["projects"], " "); got != `{"id":1,"name":"one, renamed by a","note":"b note","priority":5} `+
				`{"id":2,"name":"two","note":"b note","priority":6} {"id":3,"name":"three","note":null,"priority":0}` {
				t.Fatalf("server's projects: %s", got)
			}
			for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Errorf("node %s differs from the server:\n%s", name, d)
				}
			}
			if res := syncOK(t, newA); res.Changed() || len(res.Pulls) != 1 {
				t.Fatalf("the next sync must only check (no backfill left): %v", res)
			}
		})
	}
}

// A table the node tracked with only its key column gains a column: the
// backfill sets that column in the rows the node holds, and a row the
// node deleted under release 1 (its delete pending) is not brought back:
// the delete reaches the server.
func TestBackfillKeyOnlyTable(t *testing.T) {
	t.Parallel()
	type tagV1 struct {
		bun.BaseModel `bun:"table:kotags"`

		ID int64 `bun:"id,pk,autoincrement"`
	}
	type tagV2 struct {
		bun.BaseModel `bun:"table:kotags"`

		ID   int64   `bun:"id,pk,autoincrement"`
		Name *string `bun:"name"`
	}
	create := func(ctx context.Context, db bun.IDB) error {
		_, err := db.NewCreateTable().Model((*tagV1)(nil)).IfNotExists().Exec(ctx)
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, create, []any{(*tagV1)(nil)}, nil)
			db := dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", db, create, []any{(*tagV1)(nil)}, nil)
			execSQL(t, db, "INSERT INTO kotags (id) VALUES (1), (2), (3)")
			syncOK(t, a.Client)

			// The server's migration gives the column a default (an
			// UPDATE would be captured, a version the node pulls).
			execSQL(t, serverDB, "ALTER TABLE kotags ADD COLUMN name VARCHAR DEFAULT 'tagged'")
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, []any{(*tagV2)(nil)}, nil)
			execSQL(t, db, "DELETE FROM kotags WHERE id = 2")
			execSQL(t, db, "ALTER TABLE kotags ADD COLUMN name VARCHAR")
			upgraded := restart(t, srv2, db, 0, nil, (*tagV2)(nil))
			if res := syncOK(t, upgraded); len(res.Pulls) != 1 || len(res.Pushes) != 1 || res.Pushes[0].Operations != 1 {
				t.Fatalf("the upgraded node's sync must backfill, then push its delete: %v", res)
			}
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["kotags"], " "); got != `{"id":1,"name":"tagged"} {"id":3,"name":"tagged"}` {
				t.Fatalf("server's tags: %s", got)
			}
			if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
				t.Errorf("the node differs from the server:\n%s", d)
			}
		})
	}
}

// A table new to the node is backfilled with the merge's D2: a row of it
// referencing a row the node deleted and has not pushed brings that row
// back from the server and drops the local delete, as a pulled insert
// would. Before, the backfill failed on the foreign key at every sync.
func TestBackfillRestoresDeletedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createV1, modelsV1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createV1, modelsV1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createV1, modelsV1, nil)
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two'), ('three')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			if err := migrateV2(ctx, serverDB); err != nil {
				t.Fatal(err)
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, modelsV2, nil)
			if err := migrateV2(ctx, dbB); err != nil {
				t.Fatal(err)
			}
			newB := restart(t, srv2, dbB, 0, nil, modelsV2...)
			syncOK(t, newB)
			execSQL(t, dbB, "UPDATE projects SET note = 'kept' WHERE id = 2")
			execSQL(t, dbB, "INSERT INTO labels (project_id, text) VALUES (2, 'on two'), (1, 'on one')")
			syncOK(t, newB)

			// The old node pulls b's versions (without the labels), then
			// deletes projects 2 and 3 and upgrades before it pushes.
			oldA := restart(t, srv2, dbA, 0, nil, modelsV1...)
			syncOK(t, oldA)
			execSQL(t, dbA, "DELETE FROM projects WHERE id IN (2, 3)")
			if err := migrateV2(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, modelsV2...)
			res := syncOK(t, newA)
			if len(res.Pulls) == 0 || res.Pulls[0].Conflicts["reversed_dependency"] != 1 {
				t.Fatalf("the backfill must bring project 2 back (D2): %+v", res.Pulls)
			}
			syncOK(t, newB)
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["projects"], " "); got != `{"id":1,"name":"one","note":null,"priority":0} {"id":2,"name":"two","note":"kept","priority":0}` {
				t.Fatalf("server's projects: %s", got)
			}
			for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Errorf("node %s differs from the server:\n%s", name, d)
				}
			}
		})
	}
}

// A column a table gains that references another of the node's tables
// restores, like a new table's rows, a referenced row the node deleted
// and has not pushed (D2), and its references are checked on SQLite too.
func TestBackfillGainedReferenceRestoresParent(t *testing.T) {
	t.Parallel()
	type ownerT struct {
		bun.BaseModel `bun:"table:gowners"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	type itemV1 struct {
		bun.BaseModel `bun:"table:gitems"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	type itemV2 struct {
		bun.BaseModel `bun:"table:gitems"`

		ID      int64   `bun:"id,pk,autoincrement"`
		Name    string  `bun:"name,notnull"`
		OwnerID *int64  `bun:"owner_id"`
		Owner   *ownerT `bun:"rel:belongs-to,join:owner_id=id"`
	}
	v1 := []any{(*ownerT)(nil), (*itemV1)(nil)}
	v2 := []any{(*ownerT)(nil), (*itemV2)(nil)}
	create := synctest.CreateTables(v1...)
	migrate := func(ctx context.Context, db bun.IDB) error {
		_, err := db.ExecContext(ctx, "ALTER TABLE gitems ADD COLUMN owner_id BIGINT REFERENCES gowners (id)")
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, create, v1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, create, v1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, create, v1, nil)
			execSQL(t, dbA, "INSERT INTO gowners (name) VALUES ('ann'), ('bob')")
			execSQL(t, dbA, "INSERT INTO gitems (name) VALUES ('pen')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			for _, db := range []*bun.DB{serverDB, dbB} {
				if err := migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, v2, nil)
			newB := restart(t, srv2, dbB, 0, nil, v2...)
			syncOK(t, newB)
			execSQL(t, dbB, "UPDATE gitems SET owner_id = 2")
			syncOK(t, newB)

			oldA := restart(t, srv2, dbA, 0, nil, v1...)
			syncOK(t, oldA)
			execSQL(t, dbA, "DELETE FROM gowners WHERE id = 2")
			if err := migrate(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, v2...)
			res := syncOK(t, newA)
			if len(res.Pulls) == 0 || res.Pulls[0].Conflicts["reversed_dependency"] != 1 {
				t.Fatalf("the backfill must bring owner 2 back (D2): %+v", res.Pulls)
			}
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["gowners"], " "); got != `{"id":1,"name":"ann"} {"id":2,"name":"bob"}` {
				t.Fatalf("server's owners: %s", got)
			}
			if d := synctest.Diff(want, synctest.Dump(t, dbA, srv2.Reg)); d != "" {
				t.Errorf("a differs from the server:\n%s", d)
			}
		})
	}
}

// projectLegacy is release 1 of an application whose release 2 stops
// tracking the legacy column (projectV1, on the same table): a change the
// server cannot serve to release-1 nodes.
type projectLegacy struct {
	bun.BaseModel `bun:"table:projects"`

	ID     int64   `bun:"id,pk,autoincrement"`
	Name   string  `bun:"name,notnull"`
	Legacy *string `bun:"legacy"`
}

func createLegacy(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*projectLegacy)(nil)).IfNotExists().Exec(ctx)
	return err
}

// A node of a release the server no longer serves keeps calling (sync,
// query, watch), refused each time with schema_mismatch, for longer than
// the horizon: it no longer holds the log back, and the trim retires it
// while the node that syncs holds the floor at the version it holds (the
// base of its last push). When the refused node upgrades, its sync is
// answered reset_required, so it resets, keeping the row it inserted
// while refused, and pushes it.
func TestSchemaRefusedNodeRetires(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			cfg := trimConfig(clk)
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createLegacy, []any{(*projectLegacy)(nil)}, cfg)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createLegacy, []any{(*projectLegacy)(nil)}, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createLegacy, []any{(*projectLegacy)(nil)}, nil)
			execSQL(t, dbA, "INSERT INTO projects (name, legacy) VALUES ('one', 'x'), ('two', NULL)")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			// Release 2 of the server no longer tracks legacy; a upgrades,
			// b stays on release 1 and is refused.
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, modelsV1, cfg)
			newA := restart(t, srv2, dbA, 0, nil, modelsV1...)
			syncOK(t, newA)
			oldB := restart(t, srv2, dbB, 0, nil, (*projectLegacy)(nil))
			execSQL(t, dbB, "INSERT INTO projects (name) VALUES ('three, by b')")
			var node models.Node
			if err := dbB.NewSelect().Model(&node).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			tr, err := client.NewHTTPTransport(srv2.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			refused := func(what string, err error) {
				t.Helper()
				var se *dbsync.SchemaError
				if !errors.As(err, &se) || !errors.Is(err, dbsync.ErrSchemaMismatch) {
					t.Fatalf("b's %s: %v, want a *dbsync.SchemaError", what, err)
				}
			}
			for i := range 5 {
				clk.Advance(6 * time.Hour)
				execSQL(t, dbA, "UPDATE projects SET name = ? WHERE id = 2", fmt.Sprintf("two, %d", i))
				syncOK(t, newA)
				_, err := oldB.Sync(ctx)
				refused("sync", err)
				_, err = oldB.Query(ctx, &protocol.QueryRequest{Table: "projects"})
				refused("query", err)
				_, err = tr.Watch(ctx, &client.Call{Schema: oldB.Registry().Fingerprint(), Tables: oldB.Registry().NodeSchema().String(),
					NodeID: node.NodeID, Secret: node.Secret, Time: time.Now()}, &protocol.WatchRequest{After: 1, Wait: time.Millisecond})
				refused("watch", err)
			}
			// a pushes once more without pulling: it holds the version
			// before its push, which the trim keeps.
			execSQL(t, dbA, "UPDATE projects SET name = 'one, last' WHERE id = 1")
			if _, err := newA.Push(ctx); err != nil {
				t.Fatal(err)
			}
			var latest int64
			if err := serverDB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &latest); err != nil {
				t.Fatal(err)
			}
			res, err := srv2.Srv.Trim(ctx)
			if err != nil || res.LiveNodes != 1 || res.RetiredNodes != 1 || res.Floor != latest-1 {
				t.Fatalf("trim: %+v %v, want a live holding the floor at version %d, b retired", res, err, latest-1)
			}

			// b upgrades, and syncs.
			newB := restart(t, srv2, dbB, 0, nil, modelsV1...)
			sr := syncOK(t, newB)
			if sr.Reset == nil || sr.Reset.Kept != 1 || len(sr.Pushes) != 1 || sr.Pushes[0].Operations != 1 {
				t.Fatalf("the upgraded node's sync must reset and push its insert: %v", sr)
			}
			syncOK(t, newA)
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["projects"], " "); got != `{"id":1,"name":"one, last"} {"id":2,"name":"two, 4"} {"id":3,"name":"three, by b"}` {
				t.Fatalf("server's projects: %s", got)
			}
			for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Errorf("node %s differs from the server:\n%s", name, d)
				}
			}
		})
	}
}

// TestSchemaNullabilityRefused: a column that can hold NULL on one side
// and is NOT NULL on the other, with a field that can be nil, is refused
// at the schema check, naming table and column, when a NULL can reach
// the side that cannot write it: the server's NULLs through a pulled
// table, the node's through a pushed one. A field that cannot be nil
// reads NULL as its zero value and is not compared; a node that does not
// send its nullability (a release before it) is not checked.
func TestSchemaNullabilityRefused(t *testing.T) {
	t.Parallel()
	// The columns of projectV2, note NOT NULL.
	type projectNoteRequired struct {
		bun.BaseModel `bun:"table:projects"`

		ID       int64   `bun:"id,pk,autoincrement"`
		Name     string  `bun:"name,notnull"`
		Note     *string `bun:"note,notnull"`
		Priority int64   `bun:"priority,notnull,default:0"`
	}
	// projectV2 with a note that cannot be nil, over a nullable column.
	type projectNoteValue struct {
		bun.BaseModel `bun:"table:projects"`

		ID       int64  `bun:"id,pk,autoincrement"`
		Name     string `bun:"name,notnull"`
		Note     string `bun:"note"`
		Priority int64  `bun:"priority,notnull,default:0"`
	}
	create := func(model any) func(context.Context, bun.IDB) error {
		return func(ctx context.Context, db bun.IDB) error {
			_, err := db.NewCreateTable().Model(model).Exec(ctx)
			return err
		}
	}
	nullable, required := create((*projectV2)(nil)), create((*projectNoteRequired)(nil))
	cases := []struct {
		name             string
		serverDB, nodeDB func(context.Context, bun.IDB) error
		nodeModel        any
		direction        func(any) dbsync.Model
		withoutHeader    bool
		want             *protocol.SchemaDifference // nil: accepted
	}{
		{name: "node NOT NULL, server nullable", serverDB: nullable, nodeDB: required, nodeModel: (*projectV2)(nil),
			want: &protocol.SchemaDifference{Table: "projects", Column: "note", Node: "not null", Server: "nullable"}},
		{name: "node nullable, server NOT NULL", serverDB: required, nodeDB: nullable, nodeModel: (*projectV2)(nil),
			want: &protocol.SchemaDifference{Table: "projects", Column: "note", Node: "nullable", Server: "not null"}},
		{name: "both nullable", serverDB: nullable, nodeDB: nullable, nodeModel: (*projectV2)(nil)},
		{name: "both NOT NULL", serverDB: required, nodeDB: required, nodeModel: (*projectV2)(nil)},
		// The node never sends NULL, and reads one as "": its field
		// cannot be nil (README, known limits).
		{name: "node field cannot be nil, server nullable", serverDB: nullable, nodeDB: create((*projectNoteValue)(nil)), nodeModel: (*projectNoteValue)(nil)},
		{name: "node field cannot be nil, server NOT NULL", serverDB: required, nodeDB: create((*projectNoteValue)(nil)), nodeModel: (*projectNoteValue)(nil)},
		// Differences that cannot reach the side that cannot hold NULL.
		{name: "push-only table, node NOT NULL", serverDB: nullable, nodeDB: required, nodeModel: (*projectV2)(nil), direction: dbsync.PushOnly},
		{name: "pull-only table, server NOT NULL", serverDB: required, nodeDB: nullable, nodeModel: (*projectV2)(nil), direction: dbsync.PullOnly},
		{name: "old node, node NOT NULL", serverDB: nullable, nodeDB: required, nodeModel: (*projectV2)(nil), withoutHeader: true},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				var serverModel, nodeModel any = (*projectV2)(nil), tc.nodeModel
				if tc.direction != nil {
					serverModel, nodeModel = tc.direction(serverModel), tc.direction(nodeModel)
				}
				srv := synctest.NewServerWith(t, dbtest.Open(t, kind), tc.serverDB, []any{serverModel}, nil)
				db := dbtest.Open(t, kind)
				if err := tc.nodeDB(ctx, db); err != nil {
					t.Fatal(err)
				}
				reg, err := dbsync.Track(db, nodeModel)
				if err != nil {
					t.Fatal(err)
				}
				hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					if tc.withoutHeader { // a node of a release before the header
						r.Header.Del(protocol.HeaderNullable)
						if err := synctest.SignForm1(r, db); err != nil {
							return nil, err
						}
					}
					return http.DefaultTransport.RoundTrip(r)
				})}
				c, err := client.New(ctx, db, reg, &client.Config{URL: srv.URL, HTTPClient: hc})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Register(ctx, nil)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("register: %v, want it accepted", err)
					}
					if _, err := c.Sync(ctx); err != nil {
						t.Fatalf("sync: %v", err)
					}
					return
				}
				var se *dbsync.SchemaError
				if !errors.As(err, &se) || !errors.Is(err, dbsync.ErrSchemaMismatch) {
					t.Fatalf("register: %v, want a *dbsync.SchemaError", err)
				}
				if w := *tc.want; len(se.Differences) != 1 || se.Differences[0].Table != w.Table || se.Differences[0].Column != w.Column ||
					se.Differences[0].Node != w.Node || se.Differences[0].Server != w.Server || se.Differences[0].Problem == "" {
					t.Fatalf("differences %+v, want %+v", se.Differences, w)
				}
				if msg := err.Error(); !strings.Contains(msg, "projects.note") || !strings.Contains(msg, "NULL") {
					t.Errorf("message %q does not name the column and the problem", msg)
				}
			})
		}
	}
}

// TestSchemaNullabilityNilSlices: a []byte, json.RawMessage or
// bun.NullTime field carries NULL too (nil, empty, zero: null on the
// wire, NULL written), so its
// column's nullability is compared like a pointer's. Before, a node whose
// column was NOT NULL passed the check against a server's nullable one,
// and its pull failed on the server's NULL at apply time.
func TestSchemaNullabilityNilSlices(t *testing.T) {
	t.Parallel()
	type blob struct {
		bun.BaseModel `bun:"table:blobs"`

		ID   int64           `bun:"id,pk,autoincrement"`
		Data []byte          `bun:"data"`
		Doc  json.RawMessage `bun:"doc,type:text"`
		At   bun.NullTime    `bun:"at"`
	}
	for _, kind := range dbtest.Kinds {
		for _, column := range []string{"data", "doc", "at"} {
			t.Run(kind+"/"+column, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				create := func(notNull string) func(context.Context, bun.IDB) error {
					return func(ctx context.Context, db bun.IDB) error {
						serial, bytes, at := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "TIMESTAMP"
						if db.Dialect().Name() == dialect.PG {
							serial, bytes, at = "BIGSERIAL PRIMARY KEY", "BYTEA", "TIMESTAMPTZ"
						}
						not := map[string]string{column: notNull}
						_, err := db.ExecContext(ctx, "CREATE TABLE blobs (id "+serial+", data "+bytes+not["data"]+", doc TEXT"+not["doc"]+", at "+at+strings.ReplaceAll(not["at"], "''", "CURRENT_TIMESTAMP")+")")
						return err
					}
				}
				srv := synctest.NewServerWith(t, dbtest.Open(t, kind), create(""), []any{(*blob)(nil)}, nil)
				if _, err := srv.DB.ExecContext(ctx, "INSERT INTO blobs (data, doc, at) VALUES (NULL, NULL, NULL)"); err != nil {
					t.Fatal(err)
				}
				db := dbtest.Open(t, kind)
				if err := create(" NOT NULL DEFAULT ''")(ctx, db); err != nil {
					t.Fatal(err)
				}
				reg, err := dbsync.Track(db, (*blob)(nil))
				if err != nil {
					t.Fatal(err)
				}
				c, err := client.New(ctx, db, reg, &client.Config{URL: srv.URL})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Register(ctx, nil)
				if err == nil {
					_, err = c.Sync(ctx)
				}
				var se *dbsync.SchemaError
				if !errors.As(err, &se) || len(se.Differences) != 1 || se.Differences[0].Table != "blobs" || se.Differences[0].Column != column {
					t.Fatalf("register, sync: %v; want a *dbsync.SchemaError naming blobs.%s", err, column)
				}
			})
		}
	}
}

// A sync that only pulls a backfill reports it: the upgraded node's rows
// took the server's values of the new columns, so the sync changed them
// (SyncResult.Changed, PullResult.Backfilled), though no version came.
// It reported "nothing to push or pull" and Changed false, and an
// application refreshing on Changed missed the new columns' values.
func TestSchemaBackfillReported(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createV1, modelsV1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, createV1, modelsV1, nil)
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two')")
			syncOK(t, a.Client)
			b := synctest.NewClientWith(t, srv1, "b", dbB, createV1, modelsV1, nil)
			syncOK(t, b.Client)

			if err := migrateV2(ctx, serverDB); err != nil {
				t.Fatal(err)
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, modelsV2, nil)
			if err := migrateV2(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, modelsV2...)
			syncOK(t, newA)
			execSQL(t, dbA, "UPDATE projects SET note = 'a note', priority = 3")
			syncOK(t, newA)
			oldB := restart(t, srv2, dbB, 0, nil, modelsV1...)
			syncOK(t, oldB) // the version of a's update, without its columns

			if err := migrateV2(ctx, dbB); err != nil {
				t.Fatal(err)
			}
			newB := restart(t, srv2, dbB, 0, nil, modelsV2...)
			res := syncOK(t, newB)
			if len(res.Pulls) != 1 || res.Pulls[0].Versions != 0 || res.Pulls[0].Backfilled != 2 {
				t.Fatalf("the upgraded node's sync must pull the backfill of its 2 rows only: %+v", res.Pulls)
			}
			if !res.Changed() || !res.Pulls[0].Changed() || !strings.Contains(res.String(), "backfilled 2 row(s)") ||
				!strings.Contains(res.Pulls[0].String(), "backfilled 2 row(s)") {
				t.Fatalf("a sync that backfilled rows must report it: %v (pull: %v)", res, res.Pulls[0])
			}
			if d := synctest.Diff(synctest.Dump(t, serverDB, srv2.Reg), synctest.Dump(t, dbB, srv2.Reg)); d != "" {
				t.Fatalf("the upgraded node differs from the server:\n%s", d)
			}
		})
	}
}
