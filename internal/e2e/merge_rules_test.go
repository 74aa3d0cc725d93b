package e2e_test

// Rule tests through the real stack (merge.md sections 5 and 6): a server
// on SQLite or PostgreSQL, two SQLite clients over loopback HTTP, on
// integer and on UUID keys. Each scenario is named by the rule it pins and
// reproduces python-sync-db's verified outcome (its reference §10.4) where
// there is one; every scenario ends by checking all three databases.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// Models of the stack tests and of the convergence test: a parent with a
// unique name and children that belong to it (ON DELETE CASCADE), with
// integer keys or with UUID keys. Tag is an identity that never changes
// (keys can: K1); Val and Updated are free data, Updated feeds
// LastWriteWins.

type mrParentInt struct {
	bun.BaseModel `bun:"table:mr_parents"`

	ID      int64     `bun:"id,pk,autoincrement"`
	Name    string    `bun:"name,notnull,unique"`
	Tag     string    `bun:"tag,notnull"`
	Val     int64     `bun:"val,notnull"`
	Updated time.Time `bun:"updated,notnull"`
}

type mrChildInt struct {
	bun.BaseModel `bun:"table:mr_children"`

	ID       int64        `bun:"id,pk,autoincrement"`
	ParentID int64        `bun:"parent_id,notnull"`
	Title    string       `bun:"title,notnull"`
	Tag      string       `bun:"tag,notnull"`
	Val      int64        `bun:"val,notnull"`
	Updated  time.Time    `bun:"updated,notnull"`
	Parent   *mrParentInt `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

type mrParentUUID struct {
	bun.BaseModel `bun:"table:mr_parents"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	Name    string    `bun:"name,notnull,unique"`
	Tag     string    `bun:"tag,notnull"`
	Val     int64     `bun:"val,notnull"`
	Updated time.Time `bun:"updated,notnull"`
}

type mrChildUUID struct {
	bun.BaseModel `bun:"table:mr_children"`

	ID       uuid.UUID     `bun:"id,pk,type:uuid"`
	ParentID uuid.UUID     `bun:"parent_id,type:uuid,notnull"`
	Title    string        `bun:"title,notnull"`
	Tag      string        `bun:"tag,notnull"`
	Val      int64         `bun:"val,notnull"`
	Updated  time.Time     `bun:"updated,notnull"`
	Parent   *mrParentUUID `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// Release 2 of the models: mr_parents gains a column (mrNote).

type mrParentIntV2 struct {
	bun.BaseModel `bun:"table:mr_parents"`

	ID      int64     `bun:"id,pk,autoincrement"`
	Name    string    `bun:"name,notnull,unique"`
	Tag     string    `bun:"tag,notnull"`
	Val     int64     `bun:"val,notnull"`
	Updated time.Time `bun:"updated,notnull"`
	Note    string    `bun:"note,notnull,default:''"`
}

type mrChildIntV2 struct {
	bun.BaseModel `bun:"table:mr_children"`

	ID       int64          `bun:"id,pk,autoincrement"`
	ParentID int64          `bun:"parent_id,notnull"`
	Title    string         `bun:"title,notnull"`
	Tag      string         `bun:"tag,notnull"`
	Val      int64          `bun:"val,notnull"`
	Updated  time.Time      `bun:"updated,notnull"`
	Parent   *mrParentIntV2 `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

type mrParentUUIDV2 struct {
	bun.BaseModel `bun:"table:mr_parents"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	Name    string    `bun:"name,notnull,unique"`
	Tag     string    `bun:"tag,notnull"`
	Val     int64     `bun:"val,notnull"`
	Updated time.Time `bun:"updated,notnull"`
	Note    string    `bun:"note,notnull,default:''"`
}

type mrChildUUIDV2 struct {
	bun.BaseModel `bun:"table:mr_children"`

	ID       uuid.UUID       `bun:"id,pk,type:uuid"`
	ParentID uuid.UUID       `bun:"parent_id,type:uuid,notnull"`
	Title    string          `bun:"title,notnull"`
	Tag      string          `bun:"tag,notnull"`
	Val      int64           `bun:"val,notnull"`
	Updated  time.Time       `bun:"updated,notnull"`
	Parent   *mrParentUUIDV2 `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

const (
	mrParents  = "mr_parents"
	mrChildren = "mr_children"
)

// mrKind is the key kind of the models; modelsV2 are release 2's.
type mrKind struct {
	name             string
	models, modelsV2 []any
}

var mrKinds = []mrKind{
	{"int", []any{(*mrParentInt)(nil), (*mrChildInt)(nil)}, []any{(*mrParentIntV2)(nil), (*mrChildIntV2)(nil)}},
	{"uuid", []any{(*mrParentUUID)(nil), (*mrChildUUID)(nil)}, []any{(*mrParentUUIDV2)(nil), (*mrChildUUIDV2)(nil)}},
}

func (k mrKind) isInt() bool { return k.name == "int" }

func (k mrKind) schema(ctx context.Context, db bun.IDB) error { return createModels(ctx, db, k.models) }

// schemaV2 creates release 2's tables (nothing, on a database of release
// 1 migrated by mrNote).
func (k mrKind) schemaV2(ctx context.Context, db bun.IDB) error {
	return createModels(ctx, db, k.modelsV2)
}

// execEach runs stmts on db, in order, stopping at the first error.
func execEach(ctx context.Context, db bun.IDB, stmts ...string) error {
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func createModels(ctx context.Context, db bun.IDB, models []any) error {
	for _, m := range models {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return fmt.Errorf("create %T: %w", m, err)
		}
	}
	return nil
}

// nodeDB opens a node's database of kind db ("": SQLite), from a
// template with the schema and the client's tables and triggers
// installed.
func (k mrKind) nodeDB(t *testing.T, db string) *bun.DB {
	t.Helper()
	if db == "" {
		db = dbtest.KindSQLite
	}
	return synctest.ClientDB(t, db, "mr/"+k.name, k.schema, k.models)
}

// serverDB opens a server's database of kind db, from a template with
// the schema and the server's tables and triggers installed.
func (k mrKind) serverDB(t *testing.T, db string) *bun.DB {
	t.Helper()
	return synctest.ServerDB(t, db, "mr/"+k.name, k.schema, k.models)
}

// mrTime is the base of the Updated values.
var mrTime = time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC)

// insertParent inserts a parent and returns its key. newKey gives UUID keys
// (nil: uuid.New).
func (k mrKind) insertParent(ctx context.Context, db bun.IDB, name, tag string, val int64, updated time.Time, newKey func() string) (string, error) {
	if k.isInt() {
		var id int64
		err := db.NewRaw("INSERT INTO mr_parents (name, tag, val, updated) VALUES (?, ?, ?, ?) RETURNING id", name, tag, val, updated).Scan(ctx, &id)
		return fmt.Sprint(id), err
	}
	key := uuid.NewString()
	if newKey != nil {
		key = newKey()
	}
	_, err := db.ExecContext(ctx, "INSERT INTO mr_parents (id, name, tag, val, updated) VALUES (?, ?, ?, ?, ?)", key, name, tag, val, updated)
	return key, err
}

// insertChild inserts a child of parent and returns its key.
func (k mrKind) insertChild(ctx context.Context, db bun.IDB, parent, title, tag string, val int64, updated time.Time, newKey func() string) (string, error) {
	if k.isInt() {
		var id int64
		err := db.NewRaw("INSERT INTO mr_children (parent_id, title, tag, val, updated) VALUES (?, ?, ?, ?, ?) RETURNING id",
			k.arg(parent), title, tag, val, updated).Scan(ctx, &id)
		return fmt.Sprint(id), err
	}
	key := uuid.NewString()
	if newKey != nil {
		key = newKey()
	}
	_, err := db.ExecContext(ctx, "INSERT INTO mr_children (id, parent_id, title, tag, val, updated) VALUES (?, ?, ?, ?, ?, ?)",
		key, parent, title, tag, val, updated)
	return key, err
}

// arg is a key as a query argument.
func (k mrKind) arg(key string) any {
	if k.isInt() {
		var n int64
		fmt.Sscan(key, &n)
		return n
	}
	return key
}

// mrEnv is one scenario: a server, clients a and b, and symbolic names for
// rows ("P1", "C2") by key.
type mrEnv struct {
	t      *testing.T
	ctx    context.Context
	kind   mrKind
	server string
	nodes  string // database kind of a and b: "" is SQLite
	srv    *synctest.Server
	a, b   *synctest.Client
	keys   map[string]string // symbol → key
	syms   map[string]string // table/key → symbol
	clock  int
	cut    *atomic.Bool // A1_cut_stream: cut b's pull responses
}

// start creates the server and the clients; cfgB configures b.
func (e *mrEnv) start(cfgB *client.Config) {
	t := e.t
	t.Helper()
	e.srv = synctest.NewServerWith(t, e.kind.serverDB(t, e.server), e.kind.schema, e.kind.models, nil)
	e.a = synctest.NewClientWith(t, e.srv, "a", e.kind.nodeDB(t, e.nodes), e.kind.schema, e.kind.models, nil)
	e.b = synctest.NewClientWith(t, e.srv, "b", e.kind.nodeDB(t, e.nodes), e.kind.schema, e.kind.models, cfgB)
}

func (e *mrEnv) now() time.Time {
	e.clock++
	return mrTime.Add(time.Duration(e.clock) * time.Second)
}

func (e *mrEnv) bind(sym, table, key string) {
	e.keys[sym] = key
	e.syms[table+"/"+key] = sym
}

func (e *mrEnv) sym(table, key string) string {
	if s, ok := e.syms[table+"/"+key]; ok {
		return s
	}
	return table + "/" + key
}

// parent inserts parent sym named name on db.
func (e *mrEnv) parent(db bun.IDB, sym, name string) string {
	e.t.Helper()
	key, err := e.kind.insertParent(e.ctx, db, name, sym, 0, e.now(), nil)
	if err != nil {
		e.t.Fatalf("insert %s: %v", sym, err)
	}
	e.bind(sym, mrParents, key)
	return key
}

// child inserts child sym of parent psym on db.
func (e *mrEnv) child(db bun.IDB, sym, psym, title string) string {
	e.t.Helper()
	key, err := e.kind.insertChild(e.ctx, db, e.keys[psym], title, sym, 0, e.now(), nil)
	if err != nil {
		e.t.Fatalf("insert %s: %v", sym, err)
	}
	e.bind(sym, mrChildren, key)
	return key
}

func (e *mrEnv) exec(db bun.IDB, query string, args ...any) {
	e.t.Helper()
	if _, err := db.ExecContext(e.ctx, query, args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// rename sets a parent's name.
func (e *mrEnv) rename(db bun.IDB, sym, name string) {
	e.t.Helper()
	e.exec(db, "UPDATE mr_parents SET name = ?, updated = ? WHERE id = ?", name, e.now(), e.kind.arg(e.keys[sym]))
}

func (e *mrEnv) retitle(db bun.IDB, sym, title string) {
	e.t.Helper()
	e.exec(db, "UPDATE mr_children SET title = ?, updated = ? WHERE id = ?", title, e.now(), e.kind.arg(e.keys[sym]))
}

func (e *mrEnv) del(db bun.IDB, table, sym string) {
	e.t.Helper()
	e.exec(db, "DELETE FROM "+table+" WHERE id = ?", e.kind.arg(e.keys[sym]))
}

func (e *mrEnv) sync(c *synctest.Client) *client.SyncResult {
	e.t.Helper()
	res, err := c.Sync(e.ctx)
	if err != nil {
		e.t.Fatalf("%s sync: %v", c.Name, err)
	}
	return res
}

func (e *mrEnv) pull(c *synctest.Client) *client.PullResult {
	e.t.Helper()
	res, err := c.Pull(e.ctx)
	if err != nil {
		e.t.Fatalf("%s pull: %v", c.Name, err)
	}
	return res
}

func (e *mrEnv) push(c *synctest.Client) *client.PushResult {
	e.t.Helper()
	res, err := c.Push(e.ctx)
	if err != nil {
		e.t.Fatalf("%s push: %v", c.Name, err)
	}
	return res
}

// seed creates P1 (with child C1), P2 (with child C2) and P3 on a, and
// brings everyone to the same version.
func (e *mrEnv) seed() {
	e.t.Helper()
	e.parent(e.a.DB, "P1", "p1")
	e.parent(e.a.DB, "P2", "p2")
	e.parent(e.a.DB, "P3", "p3")
	e.child(e.a.DB, "C1", "P1", "c1")
	e.child(e.a.DB, "C2", "P2", "c2")
	e.sync(e.a)
	e.sync(e.b)
	e.converged()
}

// pending renders a client's pending operations: "i P1", oldest first.
func (e *mrEnv) pending(c *synctest.Client) []string {
	e.t.Helper()
	ops, err := c.Pending(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, op := range ops {
		out = append(out, string(op.Command)+" "+e.sym(op.Table, op.RowID))
	}
	return out
}

// log renders a client's raw log: "order:i P1".
func (e *mrEnv) log(c *synctest.Client) []string {
	e.t.Helper()
	rows, err := c.DB.QueryContext(e.ctx, `SELECT "order", content_type_id, row_id, command FROM sync_operations ORDER BY "order"`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var order, ct int64
		var row, cmd string
		if err := rows.Scan(&order, &ct, &row, &cmd); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s %s", order, strings.TrimSpace(cmd), e.sym(c.Reg.ByContentType(ct).Name, row)))
	}
	return out
}

// parents returns name → symbol of db's parents; children title → parent
// name.
func (e *mrEnv) parents(db bun.IDB) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	rows, err := db.QueryContext(e.ctx, "SELECT CAST(id AS TEXT), name FROM mr_parents")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, name string
		if err := rows.Scan(&key, &name); err != nil {
			e.t.Fatal(err)
		}
		out[name] = e.sym(mrParents, key)
	}
	return out
}

func (e *mrEnv) children(db bun.IDB) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	rows, err := db.QueryContext(e.ctx, "SELECT c.title, p.name FROM mr_children c LEFT JOIN mr_parents p ON p.id = c.parent_id")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var title string
		var name sql.NullString
		if err := rows.Scan(&title, &name); err != nil {
			e.t.Fatal(err)
		}
		out[title] = name.String
	}
	return out
}

// converged checks that a, b and the server hold the same rows, and
// returns the server's parents (name → symbol) and children (title →
// parent name).
func (e *mrEnv) converged() (map[string]string, map[string]string) {
	e.t.Helper()
	ds := synctest.Dump(e.t, e.srv.DB, e.srv.Reg)
	for _, c := range []*synctest.Client{e.a, e.b} {
		if d := synctest.Diff(synctest.Dump(e.t, c.DB, c.Reg), ds); d != "" {
			e.t.Fatalf("%s and the server differ:\n%s", c.Name, d)
		}
	}
	return e.parents(e.srv.DB), e.children(e.srv.DB)
}

func (e *mrEnv) want(what string, got, want any) {
	e.t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// state is everything a failed pull must leave untouched on a node.
func (e *mrEnv) state(c *synctest.Client) string {
	e.t.Helper()
	var versions []int64
	if err := c.DB.NewRaw("SELECT version_id FROM sync_versions ORDER BY version_id").Scan(e.ctx, &versions); err != nil {
		e.t.Fatal(err)
	}
	dump := synctest.Dump(e.t, c.DB, c.Reg)
	return fmt.Sprintf("versions %v\nlog %v\nrows %v", versions, e.log(c), dump)
}

// mrScenario is one rule scenario.
type mrScenario struct {
	name string
	cfgB func(e *mrEnv) *client.Config
	run  func(e *mrEnv)
}

func TestMergeRules(t *testing.T) {
	t.Parallel()
	for i, sc := range mrScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, server := range dbtest.Kinds {
				for _, kind := range mrKinds {
					if !pairVariant(i, server, kind) {
						continue // run by the full product (see pairVariant)
					}
					t.Run(server+"/"+kind.name, func(t *testing.T) {
						e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: server, keys: map[string]string{}, syms: map[string]string{}}
						var cfg *client.Config
						if sc.cfgB != nil {
							cfg = sc.cfgB(e)
						}
						e.start(cfg)
						sc.run(e)
					})
				}
			}
		})
	}
}

// swapOnA swaps the names of P1 and P2 on a through a temporary value and
// pushes: one push, which the server applies as a swap (V5).
func (e *mrEnv) swapOnA() {
	e.t.Helper()
	e.rename(e.a.DB, "P1", "tmp")
	e.rename(e.a.DB, "P2", "p1")
	e.rename(e.a.DB, "P1", "p2")
	e.sync(e.a)
}

func mrScenarios() []mrScenario {
	return []mrScenario{
		{name: "M1_M2_A4_A5_remote_changes", run: func(e *mrEnv) {
			e.seed()
			e.parent(e.a.DB, "P4", "p4")
			e.child(e.a.DB, "C4", "P4", "c4")
			e.rename(e.a.DB, "P1", "p1-a")
			e.del(e.a.DB, mrParents, "P3")
			e.del(e.a.DB, mrChildren, "C2")
			e.sync(e.a)
			res := e.pull(e.b)
			if len(res.Conflicts) != 0 {
				e.t.Fatalf("conflicts %v, want none", res.Conflicts)
			}
			// A4: what the merge wrote is not logged on b.
			e.want("b's log", e.log(e.b), []string{})
			// A5: the versions are stored, the operations are not.
			var nv, sv int
			if err := e.b.DB.NewRaw("SELECT COUNT(*) FROM sync_versions").Scan(e.ctx, &nv); err != nil {
				e.t.Fatal(err)
			}
			if err := e.srv.DB.NewRaw("SELECT COUNT(*) FROM sync_versions").Scan(e.ctx, &sv); err != nil {
				e.t.Fatal(err)
			}
			e.want("b's versions", nv, sv)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1-a": "P1", "p2": "P2", "p4": "P4"})
			e.want("children", cs, map[string]string{"c1": "p1-a", "c4": "p4"})
		}},
		{name: "K1_insert_insert", run: func(e *mrEnv) {
			e.seed()
			// a and b insert a parent and a child each: with integer keys,
			// the same keys (4 and 3).
			e.parent(e.a.DB, "PA", "fromA")
			e.child(e.a.DB, "CA", "PA", "fromA-child")
			e.parent(e.b.DB, "PB", "fromB")
			e.child(e.b.DB, "CB", "PB", "fromB-child")
			if e.kind.isInt() && (e.keys["PA"] != e.keys["PB"] || e.keys["CA"] != e.keys["CB"]) {
				e.t.Fatalf("keys %v: want colliding integer keys", e.keys)
			}
			e.sync(e.a)
			if !e.kind.isInt() {
				// UUID keys never collide: b's push is rebased on a's.
				if pr := e.push(e.b); !pr.Rebased {
					e.t.Fatalf("b push: %+v, want rebased", pr)
				}
				e.want("renumbered", e.pull(e.b).Conflicts[merge.KindRenumber], 0)
				e.want("b's pending", e.pending(e.b), []string{})
				e.sync(e.a)
				ps, cs := e.converged()
				e.want("parents", len(ps), 5)
				e.want("children", cs, map[string]string{"c1": "p1", "c2": "p2", "fromA-child": "fromA", "fromB-child": "fromB"})
				return
			}
			// a's version inserted b's keys: b must pull first.
			if _, err := e.b.Push(e.ctx); !errors.Is(err, dbsync.ErrPullNeeded) {
				e.t.Fatalf("b push: %v, want ErrPullNeeded", err)
			}
			res := e.pull(e.b)
			moved := res.Conflicts[merge.KindRenumber]
			if e.kind.isInt() {
				e.want("renumbered", moved, 2)
				// b's rows moved above the server's keys; its log follows.
				e.bind("PA", mrParents, e.keys["PA"])
				e.bind("CA", mrChildren, e.keys["CA"])
				e.bind("PB", mrParents, fmt.Sprint(5))
				e.bind("CB", mrChildren, fmt.Sprint(4))
			} else {
				e.want("renumbered", moved, 0)
			}
			e.want("b's parents", e.parents(e.b.DB), map[string]string{"p1": "P1", "p2": "P2", "p3": "P3", "fromA": "PA", "fromB": "PB"})
			e.want("b's children", e.children(e.b.DB), map[string]string{"c1": "p1", "c2": "p2", "fromA-child": "fromA", "fromB-child": "fromB"})
			e.want("b's pending", e.pending(e.b), []string{"i PB", "i CB"})
			e.push(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", len(ps), 5)
			e.want("children", cs, map[string]string{"c1": "p1", "c2": "p2", "fromA-child": "fromA", "fromB-child": "fromB"})
		}},
		{name: "K1_moved_key_never_reused", run: func(e *mrEnv) {
			// b's insert is moved by K1 (an UPDATE of its key), pushed, then
			// deleted on b. b's next insert must not reuse the moved key:
			// b's log would read "d k … i k" as one row updated, never moved
			// by K1, and the new row would be lost to the server's row k.
			e.seed()
			e.parent(e.a.DB, "PA", "fromA")
			e.parent(e.b.DB, "PB", "fromB")
			e.sync(e.a)
			e.pull(e.b)
			if e.kind.isInt() {
				e.bind("PA", mrParents, e.keys["PA"])
				e.bind("PB", mrParents, "5")
			}
			e.push(e.b)
			e.del(e.b.DB, mrParents, "PB")
			key := e.parent(e.b.DB, "PC", "fromB2")
			if key == e.keys["PB"] {
				e.t.Fatalf("b's new row took key %s, the key of the moved row b deleted", key)
			}
			e.want("b's pending", e.pending(e.b), []string{"d PB", "i PC"})
			e.sync(e.b)
			e.sync(e.a)
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P3", "fromA": "PA", "fromB2": "PC"})
		}},
		{name: "M3_update_update", run: func(e *mrEnv) {
			e.seed()
			e.rename(e.a.DB, "P1", "A-name")
			e.rename(e.b.DB, "P1", "B-name")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindUpdateUpdate: 1})
			e.want("b's P1", e.parents(e.b.DB)["B-name"], "P1")
			e.want("b's pending", e.pending(e.b), []string{"u P1"})
			e.push(e.b)
			e.sync(e.a)
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"B-name": "P1", "p2": "P2", "p3": "P3"})
		}},
		{name: "M4_update_delete", run: func(e *mrEnv) {
			e.seed()
			e.rename(e.a.DB, "P3", "A-p3")
			e.del(e.b.DB, mrParents, "P3")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindUpdateDelete: 1})
			// P3 is back on b with a's values; b's log is empty.
			e.want("b's P3", e.parents(e.b.DB)["A-p3"], "P3")
			e.want("b's pending", e.pending(e.b), []string{})
			if res := e.push(e.b); !res.Empty {
				e.t.Fatalf("b push %+v, want an empty push (V3)", res)
			}
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "A-p3": "P3"})
		}},
		{name: "M5_delete_update", run: func(e *mrEnv) {
			e.seed()
			e.del(e.a.DB, mrParents, "P2") // and C2, by cascade
			e.rename(e.b.DB, "P2", "B-p2")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindDeleteUpdate: 1})
			e.want("b's pending", e.pending(e.b), []string{"i P2"})
			e.push(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "B-p2": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c1": "p1"})
		}},
		{name: "M6_delete_delete", run: func(e *mrEnv) {
			e.seed()
			e.del(e.a.DB, mrParents, "P3")
			e.del(e.b.DB, mrParents, "P3")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindDeleteDelete: 1})
			e.want("b's pending", e.pending(e.b), []string{})
			if res := e.push(e.b); !res.Empty {
				e.t.Fatalf("b push %+v, want an empty push", res)
			}
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2"})
		}},
		{name: "D1_dependency", run: func(e *mrEnv) {
			e.seed()
			e.del(e.a.DB, mrChildren, "C1")
			e.del(e.a.DB, mrParents, "P1")
			e.child(e.b.DB, "C9", "P1", "c9")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindDependency: 1})
			// P1 is kept, and re-created first: its insert precedes C9's.
			e.want("b's pending", e.pending(e.b), []string{"i P1", "i C9"})
			e.push(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c2": "p2", "c9": "p1"})
		}},
		{name: "D1_dependency_after_M5", run: func(e *mrEnv) {
			// a deletes P1 (C1 goes by cascade); b changed C1. The server
			// sends C1's delete before P1's: M5 keeps C1, and D1 must then
			// keep P1 under it.
			e.seed()
			e.del(e.a.DB, mrParents, "P1")
			e.retitle(e.b.DB, "C1", "c1-b")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindDeleteUpdate: 1, merge.KindDependency: 1})
			e.want("b's pending", e.pending(e.b), []string{"i P1", "i C1"})
			e.push(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c1-b": "p1", "c2": "p2"})
		}},
		{name: "D1_python_bug_10_5", run: func(e *mrEnv) {
			// python-sync-db §10.5: the server deletes a parent while the
			// node has three pending operations, two of them children of
			// that parent. The pull adds one head entry and moves nothing.
			e.seed()
			e.del(e.a.DB, mrParents, "P1")
			e.parent(e.b.DB, "P9", "p9")
			e.child(e.b.DB, "C8", "P1", "c8")
			e.child(e.b.DB, "C9", "P1", "c9")
			before := e.log(e.b)
			e.want("b's log", len(before), 3)
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts[merge.KindDependency], 1)
			after := e.log(e.b)
			if len(after) != 4 || !strings.HasSuffix(after[0], ":i P1") || fmt.Sprint(after[1:]) != fmt.Sprint(before) {
				e.t.Fatalf("b's log %v, want one head i(P1) before the unchanged %v", after, before)
			}
			if !strings.HasPrefix(after[0], "-") {
				e.t.Fatalf("head entry %s: want an order below every entry", after[0])
			}
			e.push(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P3", "p9": "P9"})
			e.want("children", cs, map[string]string{"c2": "p2", "c8": "p1", "c9": "p1"})
		}},
		{name: "D2_reversed_dependency", run: func(e *mrEnv) {
			e.seed()
			e.child(e.a.DB, "C9", "P3", "c9")
			e.del(e.b.DB, mrParents, "P3")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{merge.KindReversedDependency: 1})
			e.want("b's pending", e.pending(e.b), []string{})
			e.sync(e.b)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c1": "p1", "c2": "p2", "c9": "p3"})
		}},
		{name: "U1_A3_value_freed_in_chunk", run: func(e *mrEnv) {
			// a deletes P3 and gives its name to a new row: b's pull deletes
			// before it writes (A3), so the value is free (U1).
			e.seed()
			e.del(e.a.DB, mrParents, "P3")
			e.parent(e.a.DB, "P4", "p3")
			e.sync(e.a)
			res := e.pull(e.b)
			e.want("conflicts", res.Conflicts, map[string]int{})
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2", "p3": "P4"})
		}},
		{name: "U2_A3_unique_swap", run: func(e *mrEnv) {
			e.seed()
			e.swapOnA()
			res := e.pull(e.b)
			if res.Conflicts[merge.KindUniqueSwap] == 0 {
				e.t.Fatalf("conflicts %v, want unique swaps", res.Conflicts)
			}
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p2": "P1", "p1": "P2", "p3": "P3"})
			// The swap parked the parents and wrote them in place: children
			// stay.
			e.want("children", cs, map[string]string{"c1": "p2", "c2": "p1"})
		}},
		{name: "U3_displaced_across_chunks", cfgB: func(*mrEnv) *client.Config { return &client.Config{ChunkSize: 1} }, run: func(e *mrEnv) {
			e.seed()
			e.swapOnA()
			res := e.pull(e.b) // one operation per chunk: P1 and P2 arrive apart
			if res.Conflicts[merge.KindUniqueSwap] == 0 {
				e.t.Fatalf("conflicts %v, want a displaced row", res.Conflicts)
			}
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p2": "P1", "p1": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c1": "p2", "c2": "p1"})
		}},
		{name: "U3_displaced_kept_by_D1", cfgB: func(*mrEnv) *client.Config { return &client.Config{ChunkSize: 1} }, run: func(e *mrEnv) {
			// a gives P3's name to P1, then deletes P3; b created a child
			// of P3 meanwhile. b's pull brings P1 first (its chunk parks P3,
			// U3), then P3's delete, which D1 refuses: b keeps P3, whose
			// name the server gave P1 (U4), not an inconsistent pull.
			e.seed()
			e.child(e.b.DB, "CB", "P3", "cb")
			e.rename(e.a.DB, "P3", "x")
			e.rename(e.a.DB, "P1", "p3")
			e.sync(e.a)
			e.del(e.a.DB, mrParents, "P3")
			e.sync(e.a)
			before := e.state(e.b)
			_, err := e.b.Pull(e.ctx)
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				e.t.Fatalf("b pull: %v, want a *dbsync.UniqueConstraintError", err)
			}
			e.want("entries", uc.Entries, []protocol.UniqueConstraintEntry{{Table: mrParents, PK: e.keys["P3"], Columns: []string{"name"}}})
			if after := e.state(e.b); after != before {
				e.t.Fatalf("b changed by a failed pull:\n%s\nwant\n%s", after, before)
			}
			// The application renames P3; the next sync re-creates it
			// with its child.
			e.rename(e.b.DB, "P3", "p3-b")
			e.sync(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p3": "P1", "p2": "P2", "p3-b": "P3"})
			e.want("children", cs, map[string]string{"c1": "p3", "c2": "p2", "cb": "p3-b"})
		}},
		{name: "U4_unique_insert", run: func(e *mrEnv) {
			e.seed()
			e.parent(e.a.DB, "PA", "Z")
			keyB := e.parent(e.b.DB, "PB", "Z")
			e.sync(e.a)
			before := e.state(e.b)
			_, err := e.b.Sync(e.ctx)
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				e.t.Fatalf("b sync: %v, want a *dbsync.UniqueConstraintError", err)
			}
			// The entry names b's row as b has it: the pull was rolled back
			// (and with it the renumbering of K1).
			want := []protocol.UniqueConstraintEntry{{Table: mrParents, PK: keyB, Columns: []string{"name"}}}
			e.want("entries", uc.Entries, want)
			if after := e.state(e.b); after != before {
				e.t.Fatalf("b changed by a failed pull:\n%s\nwant\n%s", after, before)
			}
			// The application changes the value and syncs again.
			e.exec(e.b.DB, "UPDATE mr_parents SET name = ? WHERE id = ?", "Z2", e.kind.arg(uc.Entries[0].PK))
			e.sync(e.b)
			e.sync(e.a)
			ps, _ := e.converged()
			e.want("parents", len(ps), 5)
			if _, ok := ps["Z"]; !ok || ps["Z2"] == "" {
				e.t.Fatalf("parents %v, want Z (a's) and Z2 (b's)", ps)
			}
		}},
		{name: "A1_cut_stream", cfgB: func(e *mrEnv) *client.Config {
			cut := &atomic.Bool{}
			e.cut = cut
			return &client.Config{HTTPClient: &http.Client{Transport: cutPulls(cut)}}
		}, run: func(e *mrEnv) {
			e.seed()
			e.parent(e.a.DB, "P4", "p4")
			e.rename(e.a.DB, "P1", "p1-a")
			e.sync(e.a)
			before := e.state(e.b)
			e.cut.Store(true)
			if _, err := e.b.Pull(e.ctx); !errors.Is(err, dbsync.ErrNetwork) {
				e.t.Fatalf("pull of a cut stream: %v, want ErrNetwork", err)
			}
			if after := e.state(e.b); after != before {
				e.t.Fatalf("b changed by a cut pull:\n%s\nwant\n%s", after, before)
			}
			e.cut.Store(false)
			e.pull(e.b)
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1-a": "P1", "p2": "P2", "p3": "P3", "p4": "P4"})
		}},
		{name: "A1_all_or_nothing", cfgB: func(*mrEnv) *client.Config { return &client.Config{ChunkSize: 1} }, run: func(e *mrEnv) {
			// The first chunks merge fine; a later one fails (U4): nothing
			// of the pull stays.
			e.seed()
			e.parent(e.a.DB, "P4", "fine")
			e.rename(e.a.DB, "P2", "p2-a")
			e.parent(e.a.DB, "PA", "Z")
			e.parent(e.b.DB, "PB", "Z")
			e.sync(e.a)
			before := e.state(e.b)
			_, err := e.b.Pull(e.ctx)
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				e.t.Fatalf("b pull: %v, want a *dbsync.UniqueConstraintError", err)
			}
			if after := e.state(e.b); after != before {
				e.t.Fatalf("b changed by a failed pull:\n%s\nwant\n%s", after, before)
			}
		}},
		{name: "R2_M5_row_recreated_twice_then_deleted", run: func(e *mrEnv) {
			// a deletes P3; b and x both changed it, so both re-create it
			// (M5). x pulls and re-creates P3 first; b re-creates it over
			// x's copy (M3 keeps b's insert) and pushes an insert of a row
			// the server has. c holds P3 in between. When a deletes P3 again,
			// c must lose it too: the server must not log b's write as an
			// insert, or c's pull compresses "i … d" to nothing (R2).
			e.seed()
			x := synctest.NewClientWith(e.t, e.srv, "x", e.kind.nodeDB(e.t, ""), e.kind.schema, e.kind.models, nil)
			c := synctest.NewClientWith(e.t, e.srv, "c", e.kind.nodeDB(e.t, ""), e.kind.schema, e.kind.models, nil)
			e.sync(x)
			e.sync(c)
			e.rename(e.b.DB, "P3", "p3-b")
			e.rename(x.DB, "P3", "p3-x")
			e.del(e.a.DB, mrParents, "P3")
			e.sync(e.a)
			e.pull(e.b) // M5: b re-creates P3 (pending insert), not pushed yet
			e.sync(x)   // M5 too, pushed: P3 is back on the server
			e.sync(c)   // c holds P3 again
			e.sync(e.b) // pull: M3 keeps b's insert; push over x's P3
			e.sync(e.a)
			e.del(e.a.DB, mrParents, "P3")
			e.sync(e.a)
			for _, n := range []*synctest.Client{e.b, x, c} {
				e.sync(n)
			}
			ps, _ := e.converged()
			e.want("parents", ps, map[string]string{"p1": "P1", "p2": "P2"})
			ds := synctest.Dump(e.t, e.srv.DB, e.srv.Reg)
			for _, n := range []*synctest.Client{x, c} {
				if d := synctest.Diff(synctest.Dump(e.t, n.DB, n.Reg), ds); d != "" {
					e.t.Fatalf("%s and the server differ:\n%s", n.Name, d)
				}
			}
		}},
		{name: "A2_foreign_key_violation", run: func(e *mrEnv) {
			// A server row that references a missing parent (foreign keys
			// off on the server) reaches b: the pull fails at the foreign
			// key check and nothing is applied.
			e.seed()
			e.parent(e.a.DB, "P4", "p4")
			e.sync(e.a)
			e.orphanOnServer()
			before := e.state(e.b)
			_, err := e.b.Pull(e.ctx)
			if !errors.Is(err, dbsync.ErrForeignKey) {
				e.t.Fatalf("b pull: %v, want dbsync.ErrForeignKey", err)
			}
			if after := e.state(e.b); after != before {
				e.t.Fatalf("b changed by a failed pull:\n%s\nwant\n%s", after, before)
			}
		}},
	}
}

// orphanOnServer inserts, directly on the server and with its foreign key
// checks off, a child whose parent does not exist. The capture triggers log
// it; the next pull seals it into a version.
func (e *mrEnv) orphanOnServer() {
	e.t.Helper()
	missing := "999"
	if !e.kind.isInt() {
		missing = uuid.NewString()
	}
	switch e.server {
	case dbtest.KindSQLite:
		conn, err := e.srv.DB.Conn(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(e.ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			e.t.Fatal(err)
		}
		defer conn.ExecContext(e.ctx, "PRAGMA foreign_keys = ON")
		if _, err := e.kind.insertChild(e.ctx, conn, missing, "orphan", "orphan", 0, mrTime, nil); err != nil {
			e.t.Fatal(err)
		}
	default:
		var name string
		if err := e.srv.DB.NewRaw("SELECT conname FROM pg_constraint WHERE conrelid = 'mr_children'::regclass AND contype = 'f'").Scan(e.ctx, &name); err != nil {
			e.t.Fatal(err)
		}
		e.exec(e.srv.DB, `ALTER TABLE mr_children DROP CONSTRAINT "`+name+`"`)
		if _, err := e.kind.insertChild(e.ctx, e.srv.DB, missing, "orphan", "orphan", 0, mrTime, nil); err != nil {
			e.t.Fatal(err)
		}
	}
}

// cutPulls is a transport that, while cut is set, drops the last line (the
// end line) of pull responses.
func cutPulls(cut *atomic.Bool) http.RoundTripper {
	return synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || !cut.Load() || !strings.HasSuffix(r.URL.Path, "/pull") || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		body = bytes.TrimRight(body, "\n")
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			body = body[:i+1]
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
}
