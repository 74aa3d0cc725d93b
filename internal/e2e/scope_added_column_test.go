package e2e_test

// A scope rule reading a column that release 2 added (a new owner
// column), served to nodes of release 1 that do not know the column
// (README "Partial sync: scopes", Writes; "Schema changes").

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// Release 1: lists owned by a user, notes in them.
type acList struct {
	bun.BaseModel `bun:"table:ac_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

type acNote1 struct {
	bun.BaseModel `bun:"table:ac_notes"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ListID        int64   `bun:"list_id,notnull"`
	Body          string  `bun:"body,notnull"`
	List          *acList `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// Release 2: notes gain their author, a nullable column (NULL for the
// rows of release 1 nodes' inserts) or a NOT NULL one defaulting to ”.
type acNote2 struct {
	bun.BaseModel `bun:"table:ac_notes"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ListID        int64   `bun:"list_id,notnull"`
	Body          string  `bun:"body,notnull"`
	AuthorID      *string `bun:"author_id"`
	List          *acList `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

type acNote2D struct {
	bun.BaseModel `bun:"table:ac_notes"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ListID        int64   `bun:"list_id,notnull"`
	Body          string  `bun:"body,notnull"`
	AuthorID      string  `bun:"author_id,notnull,default:''"`
	List          *acList `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// acRelease is a schema release: its models, the tables it creates and
// its migration of a database of release 1.
type acRelease struct {
	key     string
	models  []any
	migrate string // "" for release 1
}

var (
	acV1  = acRelease{key: "ac1", models: []any{(*acList)(nil), (*acNote1)(nil)}}
	acV2  = acRelease{key: "ac2", models: []any{(*acList)(nil), (*acNote2)(nil)}, migrate: "ALTER TABLE ac_notes ADD COLUMN author_id VARCHAR"}
	acV2D = acRelease{key: "ac2d", models: []any{(*acList)(nil), (*acNote2D)(nil)}, migrate: "ALTER TABLE ac_notes ADD COLUMN author_id VARCHAR NOT NULL DEFAULT ''"}
)

func (r acRelease) create(ctx context.Context, db bun.IDB) error {
	for _, m := range r.models {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

type acEnv struct {
	t    *testing.T
	ctx  context.Context
	kind string
	v2   acRelease
	srv  *synctest.Server
	ann  *synctest.Client // release 2
	bob  *synctest.Client // release 1 (upgrade: release 2)
	n    int
}

// acStart starts a server of release v2 with rules over real HTTP, ann's
// node of release 2 and bob's of release 1. Bob owns list 1 and ann list
// 2, where ann's note 20 is hers; bob's laptop (release 2) wrote note 10
// in list 1 as his; bob's phone holds both of his.
func acStart(t *testing.T, kind string, v2 acRelease, rules server.Scopes) *acEnv {
	t.Helper()
	e := &acEnv{t: t, ctx: context.Background(), kind: kind, v2: v2}
	e.srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, v2.key, v2.create, v2.models), v2.create, v2.models,
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules})
	e.ann = e.node("ann/phone", v2)
	e.bob = e.node("bob/phone", acV1)
	laptop := e.node("bob/laptop", v2)
	e.exec(laptop,
		"INSERT INTO ac_lists (id, owner_id, name) VALUES (1, 'bob', 'bob1')",
		"INSERT INTO ac_notes (id, list_id, body, author_id) VALUES (10, 1, 'n10', 'bob')")
	e.sync(laptop)
	e.exec(e.ann,
		"INSERT INTO ac_lists (id, owner_id, name) VALUES (2, 'ann', 'ann2')",
		"INSERT INTO ac_notes (id, list_id, body, author_id) VALUES (20, 2, 'n20', 'ann')")
	e.sync(e.ann)
	e.sync(e.bob)
	if got := e.count(e.bob.DB, "SELECT count(*) FROM ac_notes WHERE id = 10"); got != 1 {
		t.Fatalf("bob's phone holds %d of his note 10", got)
	}
	return e
}

func (e *acEnv) node(name string, r acRelease) *synctest.Client {
	e.t.Helper()
	user, _, _ := strings.Cut(name, "/")
	return synctest.NewClientAs(e.t, e.srv, name, "Bearer "+user, synctest.ClientDB(e.t, e.kind, r.key, r.create, r.models), r.create, r.models, nil)
}

func (e *acEnv) exec(c *synctest.Client, qs ...string) {
	e.t.Helper()
	for _, q := range qs {
		run(e.t, c.DB, q)
	}
}

func (e *acEnv) sync(c *synctest.Client) {
	e.t.Helper()
	mustSync(e.t, c)
}

func (e *acEnv) count(db bun.IDB, q string) int {
	e.t.Helper()
	var n int
	if err := db.NewRaw(q).Scan(e.ctx, &n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// author is the server's author_id of the note with body ("<null>" for
// NULL, "<none>" for no row): a node's insert moves past the keys the
// server has used (merge.md K1), its key is not known ahead.
func (e *acEnv) author(body string) string {
	e.t.Helper()
	var n, nulls int
	var a string
	if err := e.srv.DB.NewRaw("SELECT count(*), count(*) - count(author_id), COALESCE(max(author_id), '') FROM ac_notes WHERE body = ?", body).
		Scan(e.ctx, &n, &nulls, &a); err != nil {
		e.t.Fatal(err)
	}
	switch {
	case n == 0:
		return "<none>"
	case nulls > 0:
		return "<null>"
	}
	return a
}

// upgradeBob runs release 2's migration on bob's phone and opens it again
// with release 2's models.
func (e *acEnv) upgradeBob() {
	e.t.Helper()
	run(e.t, e.bob.DB, e.v2.migrate)
	reg, err := dbsync.Track(e.bob.DB, e.v2.models...)
	if err != nil {
		e.t.Fatal(err)
	}
	cl, err := client.New(e.ctx, e.bob.DB, reg, &client.Config{URL: e.srv.URL})
	if err != nil {
		e.t.Fatal(err)
	}
	e.bob = &synctest.Client{Name: e.bob.Name, DB: e.bob.DB, Reg: cl.Registry(), Client: cl}
}

// compareFresh compares c (of release r) with a fresh node of user.
func (e *acEnv) compareFresh(c *synctest.Client, user string, r acRelease) {
	e.t.Helper()
	e.n++
	fresh := e.node(fmt.Sprintf("%s/fresh%d", user, e.n), r)
	e.sync(fresh)
	if d := synctest.Diff(synctest.Dump(e.t, fresh.DB, fresh.Reg), synctest.Dump(e.t, c.DB, fresh.Reg)); d != "" {
		e.t.Errorf("%s differs from a fresh node of %s (fresh first):\n%s", c.Name, user, d)
	}
}

// wantServer checks the server's author_id of the notes with the given
// bodies.
func (e *acEnv) wantServer(want map[string]string) {
	e.t.Helper()
	for body, a := range want {
		if got := e.author(body); got != a {
			e.t.Errorf("server's note %q: author %s, want %s", body, got, a)
		}
	}
}

// wantPending checks the operations bob's phone has not pushed, as
// "table key command" in log order.
func (e *acEnv) wantPending(c *synctest.Client, want ...string) {
	e.t.Helper()
	p, err := c.Pending(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var got []string
	for _, op := range p {
		got = append(got, fmt.Sprintf("%s %s %s", op.Table, op.RowID, op.Command))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("%s pending %v, want %v", c.Name, got, want)
	}
}

// phoneNote is the key bob's phone holds its note "phone" under.
func (e *acEnv) phoneNote() string {
	e.t.Helper()
	var k int64
	if err := e.bob.DB.NewRaw("SELECT id FROM ac_notes WHERE body = 'phone'").Scan(e.ctx, &k); err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprint(k)
}

// TestScopeRuleOnAddedColumn: release 2 adds notes' author_id and scopes
// notes by it; bob's phone stays on release 1 (it does not know the
// column) against a release 2 server, SQLite and PostgreSQL, over HTTP.
// Its inserts leave author_id to the server's default: refused
// (out_of_scope) at every Sync, its other changes held back with them,
// until it gives them up (DiscardPending naming the rows the refusal
// names) or upgrades and writes the column; a rule that lets bob write
// the row otherwise (through its list) takes them. Its updates of rows it
// owns keep their author.
func TestScopeRuleOnAddedColumn(t *testing.T) {
	t.Parallel()
	byAuthor := server.Scopes{"ac_lists": server.OwnedBy("owner_id"), "ac_notes": server.OwnedBy("author_id")}
	byAuthorOrList := server.Scopes{"ac_lists": server.OwnedBy("owner_id"),
		"ac_notes": server.AnyOf(server.OwnedBy("author_id"), server.ThroughParent("list_id"))}
	// insert: bob's phone writes a note in his list (key 11, at most
	// the server's greatest key 20: the pull after the refusal moves it,
	// merge.md K1) and changes his note 10.
	insert := func(e *acEnv) {
		e.exec(e.bob,
			"INSERT INTO ac_notes (id, list_id, body) VALUES (11, 1, 'phone')",
			"UPDATE ac_notes SET body = 'n10 phone' WHERE id = 10")
	}
	// refusedTwice: bob's Sync is refused naming his new note as he holds
	// it, twice, and the server holds neither change.
	refusedTwice := func(e *acEnv) *dbsync.ScopeError {
		var se *dbsync.ScopeError
		for range 2 {
			_, err := e.bob.Sync(e.ctx)
			if !errors.As(err, &se) {
				e.t.Fatalf("bob's sync: %v, want a *dbsync.ScopeError", err)
			}
			want := fmt.Sprint([]protocol.ScopeEntry{{Table: "ac_notes", PK: e.phoneNote()}})
			if got := fmt.Sprint(se.Entries); got != want {
				e.t.Errorf("bob's sync refused %s, want %s (the key bob holds his new note under)", got, want)
			}
		}
		e.wantServer(map[string]string{"phone": "<none>", "n10 phone": "<none>"})
		return se
	}
	// discarded: bob gives the refused note up; his change of note 10
	// goes through, and his phone holds what a fresh node would.
	discarded := func(e *acEnv, se *dbsync.ScopeError) {
		if err := e.bob.DiscardPending(e.ctx, se.Entries); err != nil {
			e.t.Fatal(err)
		}
		e.wantPending(e.bob, "ac_notes 10 u")
		e.sync(e.bob)
		e.wantServer(map[string]string{"phone": "<none>", "n10 phone": "bob"})
		e.compareFresh(e.bob, "bob", acV1)
	}
	cases := []struct {
		name  string
		v2    acRelease
		rules server.Scopes
		run   func(e *acEnv)
	}{
		{
			// The documented remedy: the rows the refusal names given
			// up, the update goes through, author kept. Before, the
			// refusal named the key the push had sent, which the pull
			// after it had moved (K1): DiscardPending found nothing, and
			// on PostgreSQL (whose refused push had moved the key
			// sequence) the next refusal again named the key before the
			// move: bob stayed refused at every Sync.
			name: "insert-refused-discard/nullable", v2: acV2, rules: byAuthor,
			run: func(e *acEnv) {
				insert(e)
				se := refusedTwice(e)
				discarded(e, se)
			},
		},
		{
			name: "insert-refused-discard/default", v2: acV2D, rules: byAuthor,
			run: func(e *acEnv) {
				insert(e)
				_, err := e.bob.Sync(e.ctx)
				var se *dbsync.ScopeError
				if !errors.As(err, &se) {
					e.t.Fatalf("bob's sync: %v, want a *dbsync.ScopeError", err)
				}
				discarded(e, se)
			},
		},
		{
			// Upgraded, bob's phone still pushes the migration's
			// default (NULL): refused, until the application writes the
			// author of its pending note; the backfill leaves that value
			// (the server does not have the row).
			name: "insert-refused-upgrade", v2: acV2, rules: byAuthor,
			run: func(e *acEnv) {
				insert(e)
				refusedTwice(e)
				e.upgradeBob()
				refusedTwice(e)
				e.exec(e.bob, "UPDATE ac_notes SET author_id = 'bob' WHERE author_id IS NULL")
				e.sync(e.bob)
				e.wantServer(map[string]string{"phone": "bob", "n10 phone": "bob"})
				e.compareFresh(e.bob, "bob", e.v2)
			},
		},
		{
			// The application writes the author right after the
			// upgrade, before the first Sync (the backfill).
			name: "insert-refused-upgrade-set-first", v2: acV2D, rules: byAuthor,
			run: func(e *acEnv) {
				insert(e)
				refusedTwice(e)
				e.upgradeBob()
				e.exec(e.bob, "UPDATE ac_notes SET author_id = 'bob' WHERE author_id = ''")
				e.sync(e.bob)
				e.wantServer(map[string]string{"phone": "bob", "n10 phone": "bob"})
				e.compareFresh(e.bob, "bob", e.v2)
			},
		},
		{
			// An update of a row bob owns by the new column: taken, the
			// author kept (merge.md E1).
			name: "update-keeps-author", v2: acV2D, rules: byAuthor,
			run: func(e *acEnv) {
				e.exec(e.bob, "UPDATE ac_notes SET body = 'n10 phone' WHERE id = 10")
				e.sync(e.bob)
				e.wantServer(map[string]string{"n10 phone": "bob"})
				e.compareFresh(e.bob, "bob", acV1)
			},
		},
		{
			// A rule that lets bob write the note otherwise (his list):
			// his insert is taken, the author left to the server's
			// default; his update of it keeps it.
			name: "insert-through-list/nullable", v2: acV2, rules: byAuthorOrList,
			run: func(e *acEnv) {
				insert(e)
				e.sync(e.bob)
				e.wantServer(map[string]string{"phone": "<null>", "n10 phone": "bob"})
				e.exec(e.bob, "UPDATE ac_notes SET body = 'phone2' WHERE body = 'phone'")
				e.sync(e.bob)
				e.wantServer(map[string]string{"phone2": "<null>"})
				e.compareFresh(e.bob, "bob", acV1)
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann", e.v2)
			},
		},
		{
			name: "insert-through-list/default", v2: acV2D, rules: byAuthorOrList,
			run: func(e *acEnv) {
				insert(e)
				e.sync(e.bob)
				e.wantServer(map[string]string{"phone": "", "n10 phone": "bob"})
				e.compareFresh(e.bob, "bob", acV1)
				e.sync(e.ann)
				e.compareFresh(e.ann, "ann", e.v2)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, kind := range dbtest.Kinds {
				t.Run(kind, func(t *testing.T) {
					tc.run(acStart(t, kind, tc.v2, tc.rules))
				})
			}
		})
	}
}

// Release 1 of lists owned through owner_id; release 2 renames the
// column to owner.
type arList1 struct {
	bun.BaseModel `bun:"table:ar_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

type arListR struct {
	bun.BaseModel `bun:"table:ar_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Owner         string `bun:"owner,notnull"`
	Name          string `bun:"name,notnull"`
}

// Release 2 that drops owner_id from the model (the column stays in the
// database).
type arListD struct {
	bun.BaseModel `bun:"table:ar_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

var (
	arV1 = []any{(*arList1)(nil)}
	arVR = []any{(*arListR)(nil)}
)

// TestScopeRuleOnRenamedColumn: release 2 renames the column a scope rule
// reads (OwnedBy("owner_id") becomes OwnedBy("owner")), the server
// migrating while bob's node of release 1 holds unpushed changes. His
// node is refused for its schema (not out_of_scope, not a server error)
// at every Sync; once upgraded (his migration renames the column) his
// insert reaches the server owned by him, his rename of a list too; his
// change of the owner column itself takes the server's value (the column
// is new to his release, README "Other changes"). A rule on the column
// release 2 drops from its models is refused when the server starts.
func TestScopeRuleOnRenamedColumn(t *testing.T) {
	t.Parallel()
	rename := func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "ALTER TABLE ar_lists RENAME COLUMN owner_id TO owner")
		return err
	}
	create := func(models []any) func(context.Context, bun.IDB) error {
		return func(ctx context.Context, db bun.IDB) error {
			_, err := db.NewCreateTable().Model(models[0]).IfNotExists().Exec(ctx)
			return err
		}
	}
	noSchema := func(context.Context, bun.IDB) error { return nil }
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sdb := synctest.ServerDB(t, kind, "ar1", create(arV1), arV1)
			srv1 := synctest.NewServerWith(t, sdb, create(arV1), arV1,
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{"ar_lists": server.OwnedBy("owner_id")}})
			node := func(name string) *synctest.Client {
				user, _, _ := strings.Cut(name, "/")
				return synctest.NewClientAs(t, srv1, name, "Bearer "+user, synctest.ClientDB(t, kind, "ar1", create(arV1), arV1), create(arV1), arV1, nil)
			}
			ann, bob := node("ann/phone"), node("bob/phone")
			run(t, ann.DB, "INSERT INTO ar_lists (id, owner_id, name) VALUES (1, 'ann', 'a1')")
			run(t, bob.DB, "INSERT INTO ar_lists (id, owner_id, name) VALUES (2, 'bob', 'b2'), (3, 'bob', 'b3')")
			mustSync(t, ann)
			mustSync(t, bob)
			// Offline: a new list, a renamed one, one given to ann.
			for _, q := range []string{
				"INSERT INTO ar_lists (id, owner_id, name) VALUES (4, 'bob', 'b4')",
				"UPDATE ar_lists SET name = 'b2 renamed' WHERE id = 2",
				"UPDATE ar_lists SET owner_id = 'ann' WHERE id = 3",
			} {
				run(t, bob.DB, q)
			}
			srv1.Srv.Close()

			// A release 2 whose rule still names the column its models
			// dropped does not start.
			reg, err := dbsync.Track(sdb, (*arListD)(nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := server.New(ctx, sdb, reg, synctest.OpenConfig(&server.Config{
				Scopes: server.Scopes{"ar_lists": server.OwnedBy("owner_id")}})); !errors.Is(err, server.ErrScopeConfig) {
				t.Errorf("server.New with a rule on a column its models dropped: %v, want server.ErrScopeConfig", err)
			}

			h4ServerMigrate(t, sdb, arVR, rename)
			srv2 := synctest.NewServerWith(t, sdb, noSchema, arVR,
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{"ar_lists": server.OwnedBy("owner")}})
			oldBob := h4Client(t, srv2.URL, bob.DB, arV1...)
			for range 2 {
				var se *dbsync.SchemaError
				if _, err := oldBob.Sync(ctx); !errors.As(err, &se) {
					t.Fatalf("bob's sync of release 1: %v, want a *dbsync.SchemaError", err)
				}
			}
			regR, err := dbsync.Track(bob.DB, arVR...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := oplog.Migrate(ctx, bob.DB, regR, &oplog.InstallOptions{Client: true}, rename); err != nil {
				t.Fatalf("bob's migration: %v", err)
			}
			newBob := h4Client(t, srv2.URL, bob.DB, arVR...)
			if _, err := newBob.Sync(ctx); err != nil {
				t.Fatalf("bob's sync of release 2: %v", err)
			}
			var got []string
			if err := sdb.NewRaw("SELECT CAST(id AS TEXT) || ' ' || owner || ' ' || name FROM ar_lists ORDER BY id").Scan(ctx, &got); err != nil {
				t.Fatal(err)
			}
			want := []string{"1 ann a1", "2 bob b2 renamed", "3 bob b3", "4 bob b4"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("server's lists %q, want %q", got, want)
			}
			fresh := synctest.NewClientAs(t, srv2, "bob/fresh", "Bearer bob", synctest.ClientDB(t, kind, "arR", create(arVR), arVR), create(arVR), arVR, nil)
			mustSync(t, fresh)
			if d := synctest.Diff(synctest.Dump(t, fresh.DB, fresh.Reg), synctest.Dump(t, bob.DB, fresh.Reg)); d != "" {
				t.Errorf("bob's phone differs from a fresh node of bob (fresh first):\n%s", d)
			}
		})
	}
}
