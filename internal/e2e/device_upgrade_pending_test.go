package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// Release 1 of a device app: items and their parts (cascade).
type duItem1 struct {
	bun.BaseModel `bun:"table:du_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
}

type duPart1 struct {
	bun.BaseModel `bun:"table:du_parts"`
	ID            int64    `bun:"id,pk,autoincrement"`
	ItemID        int64    `bun:"item_id,notnull"`
	Name          string   `bun:"name,notnull"`
	Item          *duItem1 `bun:"rel:belongs-to,join:item_id=id,on_delete:CASCADE"`
}

// Release 2: items gain a note and a defaulted priority; tags reference
// items (cascade).
type duItem2 struct {
	bun.BaseModel `bun:"table:du_items"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Title         string  `bun:"title,notnull"`
	Note          *string `bun:"note"`
	Prio          int64   `bun:"prio,notnull,default:0"`
}

type duPart2 struct {
	bun.BaseModel `bun:"table:du_parts"`
	ID            int64    `bun:"id,pk,autoincrement"`
	ItemID        int64    `bun:"item_id,notnull"`
	Name          string   `bun:"name,notnull"`
	Item          *duItem2 `bun:"rel:belongs-to,join:item_id=id,on_delete:CASCADE"`
}

type duTag struct {
	bun.BaseModel `bun:"table:du_tags"`
	ID            int64    `bun:"id,pk,autoincrement"`
	ItemID        int64    `bun:"item_id,notnull"`
	Text          string   `bun:"text,notnull"`
	Item          *duItem2 `bun:"rel:belongs-to,join:item_id=id,on_delete:CASCADE"`
}

var (
	duV1 = []any{(*duItem1)(nil), (*duPart1)(nil)}
	duV2 = []any{(*duItem2)(nil), (*duPart2)(nil), (*duTag)(nil)}
)

func duCreate(ctx context.Context, db bun.IDB) error { return createModels(ctx, db, duV1) }

func duMigrate(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		"ALTER TABLE du_items ADD COLUMN note TEXT",
		"ALTER TABLE du_items ADD COLUMN prio BIGINT NOT NULL DEFAULT 0",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	_, err := db.NewCreateTable().Model((*duTag)(nil)).WithForeignKeys().Exec(ctx)
	return err
}

func duNoSchema(context.Context, bun.IDB) error { return nil }

func duCount(t *testing.T, db bun.IDB, q string) int {
	t.Helper()
	var n int
	h4Row(t, db, q, &n)
	return n
}

func duSame(t *testing.T, srv *synctest.Server, dbs map[string]*bun.DB) {
	t.Helper()
	want := synctest.Dump(t, srv.DB, srv.Reg)
	for name, db := range dbs {
		if d := synctest.Diff(want, synctest.Dump(t, db, srv.Reg)); d != "" {
			t.Errorf("%s differs from the server:\n%s", name, d)
		}
	}
}

// A device writes offline under release 1 (inserts with children, an
// update, a delete that cascades), while another node takes the next
// item key; it upgrades (its migration plain or through Client.Migrate),
// writes under release 2 (the new columns of its unpushed insert, tags on
// it and on a pushed row, a new item), then syncs with a server already
// on release 2. Nothing is lost or mis-attributed.
func TestDeviceUpgradeWithPendingWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, how := range []string{"plain", "migrate"} {
			for _, chunk := range []int{0, 2} {
				t.Run(fmt.Sprintf("%s/%s/chunk=%d", kind, how, chunk), func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					sdb := dbtest.Open(t, kind)
					srv1 := synctest.NewServerWith(t, sdb, duCreate, duV1, nil)
					dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
					a := synctest.NewClientWith(t, srv1, "a", dbA, duCreate, duV1, &client.Config{PushChunkOperations: chunk})
					b := synctest.NewClientWith(t, srv1, "b", dbB, duCreate, duV1, nil)
					lcExec(t, dbA,
						"INSERT INTO du_items (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
						"INSERT INTO du_parts (item_id, name) VALUES (1, 'p1'), (2, 'p2'), (2, 'p2b'), (3, 'p3')")
					h4Sync(t, "a", a.Client)
					h4Sync(t, "b", b.Client)

					// The server upgrades.
					srv1.Srv.Close()
					h4ServerMigrate(t, sdb, duV1, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) })
					srv2 := synctest.NewServerWith(t, sdb, duNoSchema, duV2, nil)
					// b, still release 1, takes item 4.
					oldB := h4Client(t, srv2.URL, dbB, duV1...)
					lcExec(t, dbB, "INSERT INTO du_items (id, title) VALUES (4, 'b four')")
					h4Sync(t, "b1", oldB)

					// a, offline on release 1.
					lcExec(t, dbA,
						"INSERT INTO du_items (title) VALUES ('a four')",
						"INSERT INTO du_parts (item_id, name) VALUES (4, 'p4')",
						"UPDATE du_items SET title = 'one, by a' WHERE id = 1",
						"DELETE FROM du_items WHERE id = 2",
						"UPDATE du_parts SET name = 'p3, by a' WHERE item_id = 3")
					// a upgrades.
					if how == "migrate" {
						if err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) }); err != nil {
							t.Fatal(err)
						}
					} else if err := duMigrate(ctx, dbA); err != nil {
						t.Fatal(err)
					}
					newA := h4ClientWith(t, &client.Config{URL: srv2.URL, PushChunkOperations: chunk}, dbA, duV2...)
					lcExec(t, dbA,
						"UPDATE du_items SET note = 'a note', prio = 3 WHERE id = 4",
						"INSERT INTO du_tags (item_id, text) VALUES (4, 'tag of a four'), (1, 'tag of one')",
						"INSERT INTO du_items (title, note, prio) VALUES ('a five', 'five note', 5)",
						"INSERT INTO du_tags (item_id, text) VALUES (5, 'tag of a five')")
					h4Sync(t, "a2", newA)
					h4Sync(t, "b1", oldB)

					if n := duCount(t, sdb, "SELECT count(*) FROM du_items WHERE id = 2") + duCount(t, sdb, "SELECT count(*) FROM du_parts WHERE item_id = 2"); n != 0 {
						t.Errorf("item 2 and its parts must be gone on the server: %d rows", n)
					}
					var title string
					h4Row(t, sdb, "SELECT title FROM du_items WHERE id = 1", &title)
					if title != "one, by a" {
						t.Errorf("item 1: %q", title)
					}
					var id, prio int64
					var note string
					h4Row(t, sdb, "SELECT id, note, prio FROM du_items WHERE title = 'a four'", &id, &note, &prio)
					if id == 4 || note != "a note" || prio != 3 {
						t.Errorf("a's item four: id %d note %q prio %d", id, note, prio)
					}
					if n := duCount(t, sdb, fmt.Sprintf("SELECT count(*) FROM du_parts WHERE item_id = %d AND name = 'p4'", id)); n != 1 {
						t.Errorf("a's part of item four must follow it to %d: %d", id, n)
					}
					if n := duCount(t, sdb, fmt.Sprintf("SELECT count(*) FROM du_tags WHERE item_id = %d AND text = 'tag of a four'", id)); n != 1 {
						t.Errorf("a's tag of item four must follow it to %d: %d", id, n)
					}
					if n := duCount(t, sdb, "SELECT count(*) FROM du_tags t JOIN du_items i ON i.id = t.item_id WHERE t.text = 'tag of a five' AND i.title = 'a five'"); n != 1 {
						t.Errorf("a's tag of item five: %d", n)
					}
					if n := duCount(t, sdb, "SELECT count(*) FROM du_tags t JOIN du_items i ON i.id = t.item_id WHERE i.title = 'b four'"); n != 0 {
						t.Errorf("b's item four must have no tag: %d", n)
					}
					h4Row(t, sdb, "SELECT name FROM du_parts WHERE item_id = 3", &title)
					if title != "p3, by a" {
						t.Errorf("part of 3: %q", title)
					}
					duSame(t, srv2, map[string]*bun.DB{"a": dbA})
				})
			}
		}
	}
}

// A device upgrades before its server: its syncs are refused, clearly,
// with its pending writes of both releases kept; once the server
// upgrades, one sync settles everything.
func TestDeviceUpgradeBeforeServer(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunk := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/chunk=%d", kind, chunk), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				sdb := dbtest.Open(t, kind)
				srv1 := synctest.NewServerWith(t, sdb, duCreate, duV1, nil)
				dbA := dbtest.SQLite(t)
				a := synctest.NewClientWith(t, srv1, "a", dbA, duCreate, duV1, &client.Config{PushChunkOperations: chunk})
				lcExec(t, dbA,
					"INSERT INTO du_items (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
					"INSERT INTO du_parts (item_id, name) VALUES (1, 'p1'), (2, 'p2'), (3, 'p3')")
				h4Sync(t, "a", a.Client)
				lcExec(t, dbA,
					"INSERT INTO du_items (title) VALUES ('a four')",
					"UPDATE du_items SET title = 'one, by a' WHERE id = 1",
					"DELETE FROM du_items WHERE id = 2")
				if err := duMigrate(ctx, dbA); err != nil {
					t.Fatal(err)
				}
				newA := h4ClientWith(t, &client.Config{URL: srv1.URL, PushChunkOperations: chunk}, dbA, duV2...)
				lcExec(t, dbA,
					"UPDATE du_items SET note = 'n4' WHERE id = 4",
					"INSERT INTO du_tags (item_id, text) VALUES (4, 't4'), (3, 't3')")
				for _, op := range []string{"sync", "push", "pull", "query"} {
					var err error
					switch op {
					case "sync":
						_, err = newA.Sync(ctx)
					case "push":
						_, err = newA.Push(ctx)
					case "pull":
						_, err = newA.Pull(ctx)
					case "query":
						_, err = newA.Query(ctx, &protocol.QueryRequest{Table: "du_items"})
					}
					var se *dbsync.SchemaError
					if !errors.As(err, &se) || !errors.Is(err, dbsync.ErrSchemaMismatch) {
						t.Fatalf("%s of a node newer than its server: %v", op, err)
					}
					t.Logf("%s: %v", op, err)
				}
				if n := duCount(t, sdb, "SELECT count(*) FROM du_items"); n != 3 {
					t.Fatalf("server items: %d", n)
				}
				// The server upgrades.
				srv1.Srv.Close()
				h4ServerMigrate(t, sdb, duV1, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) })
				lcExec(t, sdb, "UPDATE du_items SET note = 'server note' WHERE id = 3")
				srv2 := synctest.NewServerWith(t, sdb, duNoSchema, duV2, nil)
				newA = h4ClientWith(t, &client.Config{URL: srv2.URL, PushChunkOperations: chunk}, dbA, duV2...)
				h4Sync(t, "a2", newA)
				var note string
				h4Row(t, sdb, "SELECT note FROM du_items WHERE id = 4", &note)
				if note != "n4" {
					t.Errorf("item 4's note: %q", note)
				}
				h4Row(t, sdb, "SELECT note FROM du_items WHERE id = 3", &note)
				if note != "server note" {
					t.Errorf("item 3's note: %q", note)
				}
				if n := duCount(t, sdb, "SELECT count(*) FROM du_tags"); n != 2 {
					t.Errorf("tags: %d", n)
				}
				if n := duCount(t, sdb, "SELECT count(*) FROM du_items WHERE id = 2") + duCount(t, sdb, "SELECT count(*) FROM du_parts WHERE item_id = 2"); n != 0 {
					t.Errorf("item 2: %d", n)
				}
				duSame(t, srv2, map[string]*bun.DB{"a": dbA})
			})
		}
	}
}

// A device's chunked push is cut half uploaded; the device upgrades (and
// the server with it, before or after), writes under release 2, and
// resumes: the attempt of release 1 commits with its rows as they are
// now, and the writes of release 2 follow.
func TestDeviceUpgradeMidChunkedPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, order := range []string{"server-first", "server-between", "device-first"} {
			t.Run(kind+"/"+order, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				sdb := dbtest.Open(t, kind)
				srv1 := synctest.NewServerWith(t, sdb, duCreate, duV1, nil)
				var cur atomic.Pointer[http.Handler]
				h := srv1.HTTP.Config.Handler
				cur.Store(&h)
				front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*cur.Load()).ServeHTTP(w, r) }))
				t.Cleanup(front.Close)
				url := front.URL + "/sync"
				var chunks, cutAt atomic.Int64
				hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					if strings.HasSuffix(r.URL.Path, "/push-chunk") {
						if n := chunks.Add(1); n == cutAt.Load() {
							return nil, errors.New("connection cut")
						}
					}
					return http.DefaultTransport.RoundTrip(r)
				})}
				cfg := func() *client.Config {
					return &client.Config{URL: url, HTTPClient: hc, PushChunkOperations: 2}
				}
				upgradeServer := func() {
					srv1.Srv.Close()
					h4ServerMigrate(t, sdb, duV1, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) })
					lcExec(t, sdb, "UPDATE du_items SET note = 'server note 1' WHERE id = 1")
					srv2 := synctest.NewServerWith(t, sdb, duNoSchema, duV2, nil)
					h := srv2.HTTP.Config.Handler
					cur.Store(&h)
				}
				dbA := dbtest.SQLite(t)
				if err := duCreate(ctx, dbA); err != nil {
					t.Fatal(err)
				}
				a := h4ClientWith(t, cfg(), dbA, duV1...)
				if _, err := a.Register(ctx, nil); err != nil {
					t.Fatal(err)
				}
				lcExec(t, dbA,
					"INSERT INTO du_items (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
					"INSERT INTO du_parts (item_id, name) VALUES (1, 'p1'), (2, 'p2'), (3, 'p3')")
				h4Sync(t, "a", a)
				if order == "server-first" {
					upgradeServer()
				}
				lcExec(t, dbA,
					"INSERT INTO du_items (id, title) VALUES (10, 'ten'), (11, 'eleven'), (12, 'twelve')",
					"INSERT INTO du_parts (item_id, name) VALUES (10, 'p10'), (11, 'p11')",
					"UPDATE du_items SET title = 'one, by a' WHERE id = 1",
					"DELETE FROM du_items WHERE id = 2")
				chunks.Store(0)
				cutAt.Store(3)
				if _, err := a.Sync(ctx); err == nil || !strings.Contains(err.Error(), "connection cut") {
					t.Fatalf("cut push: %v", err)
				}
				if order == "server-between" {
					upgradeServer()
				}
				if err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) }); err != nil {
					t.Fatal(err)
				}
				newA := h4ClientWith(t, cfg(), dbA, duV2...)
				lcExec(t, dbA,
					"UPDATE du_items SET note = 'note 10', prio = 10 WHERE id = 10",
					"INSERT INTO du_tags (item_id, text) VALUES (10, 't10'), (1, 't1')",
					"DELETE FROM du_items WHERE id = 11")
				if order == "device-first" {
					if _, err := newA.Sync(ctx); !errors.Is(err, dbsync.ErrSchemaMismatch) {
						t.Fatalf("sync of a device newer than its server: %v", err)
					}
					upgradeServer()
				}
				cutAt.Store(0)
				h4Sync(t, "a2", newA)
				h4Sync(t, "a2", newA)
				var note string
				var prio int64
				h4Row(t, sdb, "SELECT note, prio FROM du_items WHERE id = 10", &note, &prio)
				if note != "note 10" || prio != 10 {
					t.Errorf("item 10: %q %d", note, prio)
				}
				var title1 string
				h4Row(t, sdb, "SELECT title, note FROM du_items WHERE id = 1", &title1, &note)
				if title1 != "one, by a" || note != "server note 1" {
					t.Errorf("item 1: %q %q", title1, note)
				}
				for q, want := range map[string]int{
					"SELECT count(*) FROM du_items WHERE id IN (2, 11)":      0,
					"SELECT count(*) FROM du_parts WHERE item_id IN (2, 11)": 0,
					"SELECT count(*) FROM du_tags":                           2,
					"SELECT count(*) FROM du_items":                          4,
					"SELECT count(*) FROM du_parts":                          3,
				} {
					if n := duCount(t, sdb, q); n != want {
						t.Errorf("%s: %d, want %d", q, n, want)
					}
				}
				srvReg, err := dbsync.Track(sdb, duV2...)
				if err != nil {
					t.Fatal(err)
				}
				duSame(t, &synctest.Server{DB: sdb, Reg: srvReg}, map[string]*bun.DB{"a": dbA})
			})
		}
	}
}

// A device left behind by the server's trim upgrades with writes of both
// releases pending — an insert whose key another node took meanwhile,
// with a part and (release 2) a tag and new columns, a delete that
// cascades — and syncs: the sync resets, keeps every pending write and
// renumbers the insert with its children of both releases (the delete
// is dropped, as merge.md T5 says of any reset).
func TestDeviceUpgradeResetKeepsBothReleases(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			cfg := &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
			sdb := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, sdb, duCreate, duV1, cfg)
			dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv1, "a", dbA, duCreate, duV1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, duCreate, duV1, nil)
			lcExec(t, dbA,
				"INSERT INTO du_items (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
				"INSERT INTO du_parts (item_id, name) VALUES (1, 'p1'), (2, 'p2'), (3, 'p3')")
			h4Sync(t, "a", a.Client)
			h4Sync(t, "b", b.Client)
			srv1.Srv.Close()
			h4ServerMigrate(t, sdb, duV1, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) })
			srv2 := synctest.NewServerWith(t, sdb, duNoSchema, duV2, cfg)
			oldB := h4Client(t, srv2.URL, dbB, duV1...)

			lcExec(t, dbA,
				"INSERT INTO du_items (id, title) VALUES (4, 'a four')",
				"INSERT INTO du_parts (item_id, name) VALUES (4, 'p4')",
				"UPDATE du_items SET title = 'one, by a' WHERE id = 1",
				"DELETE FROM du_items WHERE id = 2")
			clk.Advance(25 * time.Hour)
			lcExec(t, dbB, "INSERT INTO du_items (id, title) VALUES (4, 'b four')", "UPDATE du_items SET title = 'three, by b' WHERE id = 3")
			h4Sync(t, "b", oldB)
			h4Sync(t, "b", oldB)
			if res, err := srv2.Srv.Trim(ctx); err != nil || res.RetiredNodes != 1 {
				t.Fatalf("trim: %+v %v", res, err)
			}
			if err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return duMigrate(ctx, tx) }); err != nil {
				t.Fatal(err)
			}
			newA := h4Client(t, srv2.URL, dbA, duV2...)
			lcExec(t, dbA,
				"UPDATE du_items SET note = 'a note' WHERE id = 4",
				"INSERT INTO du_tags (item_id, text) VALUES (4, 'tag of a four'), (3, 'tag of three')")
			res, err := newA.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reset == nil {
				t.Fatalf("want a reset: %v", res)
			}
			h4Sync(t, "b", oldB)
			var id int64
			var note string
			h4Row(t, sdb, "SELECT id, note FROM du_items WHERE title = 'a four'", &id, &note)
			if id == 4 || note != "a note" {
				t.Errorf("a four: %d %q", id, note)
			}
			for q, want := range map[string]int{
				fmt.Sprintf("SELECT count(*) FROM du_parts WHERE item_id = %d", id):                           1,
				fmt.Sprintf("SELECT count(*) FROM du_tags WHERE item_id = %d AND text = 'tag of a four'", id): 1,
				"SELECT count(*) FROM du_tags WHERE item_id = 3":                                              1,
				"SELECT count(*) FROM du_tags WHERE item_id = 4":                                              0,
				// T5: a pending delete of a row the server has is dropped.
				"SELECT count(*) FROM du_items WHERE id = 2":                      1,
				"SELECT count(*) FROM du_parts WHERE item_id = 2":                 1,
				"SELECT count(*) FROM du_items WHERE title = 'one, by a'":         1,
				"SELECT count(*) FROM du_items WHERE title = 'three, by b'":       1,
				"SELECT count(*) FROM du_items WHERE id = 4 AND title = 'b four'": 1,
			} {
				if n := duCount(t, sdb, q); n != want {
					t.Errorf("%s: %d, want %d", q, n, want)
				}
			}
			duSame(t, srv2, map[string]*bun.DB{"a": dbA})
		})
	}
}

// A device's release rebuilds a parent table (SQLite's way to change or
// drop a column: new table, copy, DROP TABLE, rename) in Client.Migrate,
// as README "Schema changes" says, with pending writes of its own. With
// foreign keys enforced, SQLite's DROP TABLE deletes the table's rows
// first and runs their ON DELETE actions: every child row was deleted,
// its delete logged, and the next sync deleted it on the server. Migrate
// runs the migration with enforcement off, as SQLite's procedure for
// schema changes does, and checks the references before it commits.
func TestDeviceRebuildParentKeepsChildren(t *testing.T) {
	t.Parallel()
	rebuild := func(ctx context.Context, tx bun.Tx) error {
		return execEach(ctx, tx,
			"CREATE TABLE du_items_new (id INTEGER PRIMARY KEY AUTOINCREMENT, title VARCHAR NOT NULL)",
			"INSERT INTO du_items_new SELECT id, title FROM du_items",
			"DROP TABLE du_items",
			"ALTER TABLE du_items_new RENAME TO du_items")
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sdb := dbtest.Open(t, kind)
			srv := synctest.NewServerWith(t, sdb, duCreate, duV1, nil)
			dbA := dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv, "a", dbA, duCreate, duV1, nil)
			lcExec(t, dbA,
				"INSERT INTO du_items (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
				"INSERT INTO du_parts (item_id, name) VALUES (1, 'p1'), (2, 'p2'), (3, 'p3')")
			h4Sync(t, "a", a.Client)
			lcExec(t, dbA, "UPDATE du_parts SET name = 'p1, by a' WHERE item_id = 1", "DELETE FROM du_items WHERE id = 3")
			if err := a.Migrate(ctx, rebuild); err != nil {
				t.Fatal(err)
			}
			if n := duCount(t, dbA, "SELECT count(*) FROM du_parts"); n != 2 {
				t.Fatalf("the rebuild left %d parts on the device, want 2", n)
			}
			lcExec(t, dbA, "DELETE FROM du_items WHERE id = 2")
			h4Sync(t, "a", a.Client)
			if n := duCount(t, sdb, "SELECT count(*) FROM du_parts"); n != 1 {
				t.Errorf("server parts: %d, want 1", n)
			}
			if n := duCount(t, dbA, "SELECT count(*) FROM du_parts WHERE item_id = 2"); n != 0 {
				t.Errorf("a delete after the migration must cascade again: %d", n)
			}
			duSame(t, srv, map[string]*bun.DB{"a": dbA})

			// A migration that leaves a reference dangling fails, clearly,
			// nothing applied.
			err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error {
				_, err := tx.ExecContext(ctx, "DELETE FROM du_items WHERE id = 1")
				return err
			})
			if !errors.Is(err, dbsync.ErrForeignKey) || !strings.Contains(err.Error(), "du_parts") {
				t.Fatalf("a migration leaving a dangling reference: %v", err)
			}
			if n := duCount(t, dbA, "SELECT count(*) FROM du_items WHERE id = 1"); n != 1 {
				t.Fatalf("the failed migration deleted item 1")
			}
			migrator := a.Client // the node's latest client
			if kind == dbtest.KindSQLite {
				// A SQLite server's rebuild (oplog.Migrate) keeps them
				// too: it logged their deletes, which every node pulled.
				srv.Srv.Close()
				h4ServerMigrate(t, sdb, duV1, rebuild)
				srv2 := synctest.NewServerWith(t, sdb, duNoSchema, duV1, nil)
				if n := duCount(t, sdb, "SELECT count(*) FROM du_parts"); n != 1 {
					t.Fatalf("the server's rebuild left %d parts, want 1", n)
				}
				migrator = h4Client(t, srv2.URL, dbA, duV1...)
				h4Sync(t, "a", migrator)
				duSame(t, srv2, map[string]*bun.DB{"a": dbA})
			}

			// A reference the application left dangling earlier (written
			// with enforcement off) does not fail a later migration.
			conn, err := dbA.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"PRAGMA foreign_keys = OFF", "INSERT INTO du_parts (item_id, name) VALUES (99, 'orphan')", "PRAGMA foreign_keys = ON"} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}
			if err := migrator.Migrate(ctx, rebuild); err != nil {
				t.Fatalf("a migration on a database holding an earlier dangling reference: %v", err)
			}
		})
	}
}
