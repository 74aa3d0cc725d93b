package peer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestDeleteRuleMovedChildKeepsItsChildren: C holds folder P, doc D in P
// and a tag on D. A (which never saw D) deletes P; after that B moves D to
// a new folder Q. C then applies one batch holding P's delete and D's move:
// the delete rule leaves D alone (it moved away), and the database's ON
// DELETE CASCADE must not take D and its tag with it behind the log's back.
// Every node ends with Q, D in Q and the tag.
func TestDeleteRuleMovedChildKeepsItsChildren(t *testing.T) {
	t.Parallel()
	for _, kindC := range dbtest.Kinds {
		t.Run(kindC, func(t *testing.T) {
			t.Parallel()
			a, b, c := folderNode(t, dbtest.KindSQLite), folderNode(t, dbtest.KindSQLite), folderNode(t, kindC)
			p, d := uuid.New(), uuid.New()
			insert(t, a, &Folder{ID: p, Name: "p"})
			mustSync(t, b, a.AsPeer())
			mustSync(t, c, a.AsPeer())
			insert(t, b, &Doc{ID: d, FolderID: p, Body: "d"})
			insert(t, b, &Tag{DocID: d, Label: "tag"})
			mustSync(t, c, b.AsPeer()) // C: P, D in P, the tag
			tick()
			exec(t, a, "DELETE FROM folders WHERE id = ?", p) // A never had D
			tick()
			q := uuid.New()
			insert(t, b, &Folder{ID: q, Name: "q"})
			exec(t, b, "UPDATE docs SET folder_id = ? WHERE id = ?", q, d)
			mustSync(t, b, a.AsPeer()) // B: P deleted, D stays in Q
			mustSync(t, c, b.AsPeer()) // C: one batch with P's delete and D's move
			for range 2 {
				mustSync(t, a, b.AsPeer())
				mustSync(t, b, c.AsPeer())
				mustSync(t, c, a.AsPeer())
			}
			for i, n := range []*peer.Node{a, b, c} {
				got := folderContents(t, n)
				if len(got) != 3 || got[0] != fmt.Sprintf("doc %s in %s d", d, q) ||
					got[1] != fmt.Sprintf("folder %s q", q) || !strings.HasSuffix(got[2], fmt.Sprintf(" on %s tag", d)) {
					t.Errorf("node %d holds %q, want D in Q, Q and the tag on D", i, got)
				}
			}
			sameDigests(t, a, b, c)
		})
	}
}

// TestIntegerReferencesTravelAsIdentities: integer keys are local to each
// node, so a todo's list_id cannot travel as it is. A todo made in list x on
// A must land in list x on B even though x has another integer key there
// (B made list y first), and deleting x must take the todo with it on both.
func TestIntegerReferencesTravelAsIdentities(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			insert(t, a, &testmodels.List{Name: "x"})
			insert(t, b, &testmodels.List{Name: "y"})
			mustSync(t, a, b.AsPeer())
			var ax, bx int64
			if err := a.DB().QueryRowContext(ctx, "SELECT id FROM lists WHERE name = 'x'").Scan(&ax); err != nil {
				t.Fatal(err)
			}
			if err := b.DB().QueryRowContext(ctx, "SELECT id FROM lists WHERE name = 'x'").Scan(&bx); err != nil {
				t.Fatal(err)
			}
			if ax == bx {
				t.Fatalf("list x has key %d on both nodes: the test proves nothing", ax)
			}
			insert(t, a, &testmodels.Todo{ListID: ax, Title: "in x"})
			mustSync(t, a, b.AsPeer())
			var name string
			if err := b.DB().QueryRowContext(ctx, "SELECT l.name FROM todos t JOIN lists l ON l.id = t.list_id").Scan(&name); err != nil {
				t.Fatal(err)
			}
			if name != "x" {
				t.Fatalf("todo made in list x is in list %q on b", name)
			}
			exec(t, a, "DELETE FROM lists WHERE name = 'x'")
			mustSync(t, a, b.AsPeer())
			for i, n := range []*peer.Node{a, b} {
				if todos, lists := count(t, n, "todos"), count(t, n, "lists"); todos != 0 || lists != 1 {
					t.Errorf("node %d holds %d todos and %d lists, want 0 and 1", i, todos, lists)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

// Owner, Proj and Item: a child with two parents.
type Owner struct {
	bun.BaseModel `bun:"table:owners"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
}

type Proj struct {
	bun.BaseModel `bun:"table:projs"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
}

type Item struct {
	bun.BaseModel `bun:"table:items"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	OwnerID       uuid.UUID `bun:"owner_id,type:uuid,notnull"`
	ProjID        uuid.UUID `bun:"proj_id,type:uuid,notnull"`
	Owner         *Owner    `bun:"rel:belongs-to,join:owner_id=id,on_delete:cascade"`
	Proj          *Proj     `bun:"rel:belongs-to,join:proj_id=id,on_delete:cascade"`
}

// modelNode creates the models' tables (with their foreign keys) and
// DDL's statements on a fresh database and makes it a peer node.
func modelNode(t testing.TB, kind string, ddl []string, models ...any) *peer.Node {
	t.Helper()
	return cfgNode(t, kind, nil, ddl, models...)
}

// cfgNode is modelNode with a node configuration.
func cfgNode(t testing.TB, kind string, cfg *peer.Config, ddl []string, models ...any) *peer.Node {
	t.Helper()
	key := "refs"
	for _, m := range models {
		key += fmt.Sprintf(",%T", m)
	}
	schema := synctest.CreateTables(models...)
	if len(ddl) > 0 {
		key += ";" + strings.Join(ddl, ";")
		schema = func(ctx context.Context, db bun.IDB) error {
			for _, q := range ddl {
				if _, err := db.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return synctest.NewTemplateNode(t, kind, key, schema, models, cfg)
}

// TestCascadeTombstoneFollowsLatestParent: a child whose two parents are
// both deleted by one batch gets a tombstone one tick after the later
// parent's, written by no node (uuid.Nil), whatever the order in which the
// batch is read: every node that applies the same deletes derives the same
// version.
func TestCascadeTombstoneFollowsLatestParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			for round := range 3 {
				models := []any{(*Owner)(nil), (*Proj)(nil), (*Item)(nil)}
				a, b := modelNode(t, kind, nil, models...), modelNode(t, kind, nil, models...)
				o, p, it := uuid.New(), uuid.New(), uuid.New()
				insert(t, a, &Owner{ID: o})
				insert(t, a, &Proj{ID: p})
				mustSync(t, b, a.AsPeer())
				insert(t, b, &Item{ID: it, OwnerID: o, ProjID: p}) // a never sees it
				tick()
				if round%2 == 0 {
					exec(t, a, "DELETE FROM owners")
					tick()
					exec(t, a, "DELETE FROM projs")
				} else {
					exec(t, a, "DELETE FROM projs")
					tick()
					exec(t, a, "DELETE FROM owners")
				}
				if _, _, err := b.Pull(ctx, a.ID(), a.AsPeer()); err != nil {
					t.Fatal(err)
				}
				vo, _ := versionOf(t, b.DB(), "owners", o.String())
				vp, _ := versionOf(t, b.DB(), "projs", p.String())
				vi, ok := versionOf(t, b.DB(), "items", it.String())
				if !ok || !vi.Deleted {
					t.Fatalf("round %d: item not deleted: %+v", round, vi)
				}
				if want := max(vo.HLC, vp.HLC) + 1; vi.HLC != want || vi.Node != uuid.Nil.String() {
					t.Fatalf("round %d: item tombstone %s, want hlc %d by %s", round, fmtVersion(vi), want, uuid.Nil)
				}
				if count(t, b, "items") != 0 {
					t.Fatalf("round %d: item row left on b", round)
				}
			}
		})
	}
}

// Box and Thing: a foreign key declared only in SQL (a migration), with no
// bun relation on the models.
type Box struct {
	bun.BaseModel `bun:"table:boxes"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
}

type Thing struct {
	bun.BaseModel `bun:"table:things"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	BoxID         uuid.UUID `bun:"box_id,type:uuid,notnull"`
}

// TestDeleteRuleSQLDeclaredForeignKey: the delete rule follows foreign keys
// the database declares even when the bun models do not: a thing put in a
// box another node deleted is deleted too, on both nodes, with no error.
func TestDeleteRuleSQLDeclaredForeignKey(t *testing.T) {
	t.Parallel()
	ddl := []string{
		"CREATE TABLE boxes (id uuid PRIMARY KEY)",
		"CREATE TABLE things (id uuid PRIMARY KEY, box_id uuid NOT NULL REFERENCES boxes (id) ON DELETE CASCADE)",
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := modelNode(t, kind, ddl, (*Box)(nil), (*Thing)(nil)), modelNode(t, kind, ddl, (*Box)(nil), (*Thing)(nil))
			box := uuid.New()
			insert(t, a, &Box{ID: box})
			mustSync(t, b, a.AsPeer())
			exec(t, a, "DELETE FROM boxes")
			tick()
			insert(t, b, &Thing{ID: uuid.New(), BoxID: box})
			for range 2 {
				mustSync(t, b, a.AsPeer())
				mustSync(t, a, b.AsPeer())
			}
			for i, n := range []*peer.Node{a, b} {
				if things, boxes := count(t, n, "things"), count(t, n, "boxes"); things != 0 || boxes != 0 {
					t.Errorf("node %d holds %d things and %d boxes, want none", i, things, boxes)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

// Cmt is a self-referencing table: comments answering comments.
type Cmt struct {
	bun.BaseModel `bun:"table:cmts"`
	ID            uuid.UUID  `bun:"id,pk,type:uuid"`
	ParentID      *uuid.UUID `bun:"parent_id,type:uuid"`
	Parent        *Cmt       `bun:"rel:belongs-to,join:parent_id=id,on_delete:cascade"`
}

// TestDeleteRuleDeepChain: deleting the root of a 600-deep thread another
// node wrote below it deletes the whole thread there, in one pull, without
// hitting a recursion limit of the database's cascades or triggers.
func TestDeleteRuleDeepChain(t *testing.T) {
	t.Parallel()
	depth := 200
	if dbtest.Long() {
		depth = 600
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := modelNode(t, kind, nil, (*Cmt)(nil)), modelNode(t, kind, nil, (*Cmt)(nil))
			root := uuid.New()
			insert(t, a, &Cmt{ID: root})
			mustSync(t, b, a.AsPeer())
			prev := root
			rows := make([]*Cmt, depth)
			for i := range rows {
				p := prev
				rows[i] = &Cmt{ID: uuid.New(), ParentID: &p}
				prev = rows[i].ID
			}
			if _, err := b.DB().NewInsert().Model(&rows).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			tick()
			exec(t, a, "DELETE FROM cmts")
			if _, _, err := b.Pull(ctx, a.ID(), a.AsPeer()); err != nil {
				t.Fatal(err)
			}
			if n := count(t, b, "cmts"); n != 0 {
				t.Fatalf("%d comments left on b", n)
			}
			mustSync(t, a, b.AsPeer())
			sameDigests(t, a, b)
		})
	}
}

// Part is a self-referencing table with an integer key: parts of parts.
type Part struct {
	bun.BaseModel `bun:"table:parts"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ParentID      *int64 `bun:"parent_id"`
	Name          string `bun:"name,notnull"`
	Parent        *Part  `bun:"rel:belongs-to,join:parent_id=id,on_delete:cascade"`
}

// partTree lists a node's parts as "name < parent's name".
func partTree(t testing.TB, n *peer.Node) []string {
	t.Helper()
	var out []string
	err := n.DB().NewRaw("SELECT p.name || ' < ' || COALESCE(q.name, '-') FROM parts p LEFT JOIN parts q ON q.id = p.parent_id ORDER BY p.name").Scan(ctx, &out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSelfReferencingIntegerKeys: rows of an integer-keyed table that
// reference rows of the same table arriving in the same batch (a chain
// written in one go, and a row re-parented under a younger one) land under
// the same parents on the receiving node, whose keys differ; deleting a
// part deletes the parts below it on both nodes. Rows that reference each
// other in a cycle within one batch arrive too.
func TestSelfReferencingIntegerKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := modelNode(t, kind, nil, (*Part)(nil)), modelNode(t, kind, nil, (*Part)(nil))
			insert(t, b, &Part{Name: "b's own"}) // shifts b's keys
			root := &Part{Name: "p00"}
			insert(t, a, root)
			prev := root.ID
			for i := 1; i < 40; i++ {
				p := &Part{Name: fmt.Sprintf("p%02d", i), ParentID: &prev}
				insert(t, a, p)
				prev = p.ID
			}
			late := &Part{Name: "late"}
			insert(t, a, late)
			exec(t, a, "UPDATE parts SET parent_id = ? WHERE id = ?", late.ID, root.ID) // root now under a younger row
			mustSync(t, a, b.AsPeer())
			want := partTree(t, a)
			got := partTree(t, b)
			if len(want) != 42 || !slices.Equal(got, want) { // both ways: b's own part is on a too
				t.Fatalf("b's tree:\n%q\nwant a's:\n%q", got, want)
			}
			exec(t, b, "DELETE FROM parts WHERE name = 'p20'")
			mustSync(t, b, a.AsPeer())
			if na, nb := count(t, a, "parts"), count(t, b, "parts"); na != 22 || nb != 22 {
				t.Fatalf("after deleting p20: a holds %d parts, b %d; want 22", na, nb)
			}
			sameDigests(t, a, b)

			x, y := &Part{Name: "x"}, &Part{Name: "y"}
			insert(t, a, x)
			insert(t, a, y)
			exec(t, a, "UPDATE parts SET parent_id = ? WHERE id = ?", y.ID, x.ID)
			exec(t, a, "UPDATE parts SET parent_id = ? WHERE id = ?", x.ID, y.ID)
			mustSync(t, b, a.AsPeer())
			for i, n := range []*peer.Node{a, b} {
				var pair []string
				if err := n.DB().NewRaw("SELECT p.name || ' < ' || q.name FROM parts p JOIN parts q ON q.id = p.parent_id WHERE p.name IN ('x', 'y') ORDER BY 1").Scan(ctx, &pair); err != nil {
					t.Fatal(err)
				}
				if want := []string{"x < y", "y < x"}; !slices.Equal(pair, want) {
					t.Fatalf("node %d holds %q, want %q", i, pair, want)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

// TestIntegerParentInLaterPage: a list renamed after a todo was added to
// it comes after the todo in the feed. The todo's page then references a
// list the receiver does not hold yet: the apply still succeeds (a page may
// hold children before their parents), with the todo in its list, whatever
// the page size.
func TestIntegerParentInLaterPage(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, size := range []int{1, 2, 1000} {
			t.Run(fmt.Sprintf("%s/page=%d", kind, size), func(t *testing.T) {
				t.Parallel()
				a := newNode(t, kind, &peer.Config{BatchSize: size})
				b := newNode(t, kind, &peer.Config{BatchSize: size})
				l := &testmodels.List{Name: "x"}
				insert(t, a, l)
				insert(t, a, &testmodels.Todo{ListID: l.ID, Title: "t"})
				exec(t, a, "UPDATE lists SET name = 'x2' WHERE id = ?", l.ID)
				mustSync(t, b, a.AsPeer())
				var name string
				if err := b.DB().QueryRowContext(ctx, "SELECT l.name FROM todos t JOIN lists l ON l.id = t.list_id").Scan(&name); err != nil {
					t.Fatal(err)
				}
				if name != "x2" {
					t.Fatalf("the todo is in list %q on b, want x2", name)
				}
				sameDigests(t, a, b)
			})
		}
	}
}

// TestDeleteRuleGrandparentMovedChild: C holds G <- P <- D <- E
// (comments). A deletes G (and so P); B moves D under a new root Q. C
// applies one batch with G's and P's deletes and D's move: D moved away and
// keeps its child E; the database's ON DELETE CASCADE from G must not take
// D and E behind the log's back.
func TestDeleteRuleGrandparentMovedChild(t *testing.T) {
	t.Parallel()
	for _, kindC := range dbtest.Kinds {
		t.Run(kindC, func(t *testing.T) {
			t.Parallel()
			mk := func(kind string) *peer.Node { return modelNode(t, kind, nil, (*Cmt)(nil)) }
			a, b, c := mk(dbtest.KindSQLite), mk(dbtest.KindSQLite), mk(kindC)
			g, p, d, e, q := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
			insert(t, a, &Cmt{ID: g})
			insert(t, a, &Cmt{ID: p, ParentID: &g})
			mustSync(t, b, a.AsPeer())
			insert(t, b, &Cmt{ID: d, ParentID: &p})
			insert(t, b, &Cmt{ID: e, ParentID: &d})
			mustSync(t, c, b.AsPeer())
			tick()
			exec(t, a, "DELETE FROM cmts WHERE id = ?", g)
			tick()
			insert(t, b, &Cmt{ID: q})
			exec(t, b, "UPDATE cmts SET parent_id = ? WHERE id = ?", q, d)
			mustSync(t, b, a.AsPeer())
			mustSync(t, c, b.AsPeer())
			for range 2 {
				mustSync(t, a, b.AsPeer())
				mustSync(t, b, c.AsPeer())
				mustSync(t, c, a.AsPeer())
			}
			want := []string{d.String(), e.String(), q.String()}
			slices.Sort(want)
			for i, n := range []*peer.Node{a, b, c} {
				var got []string
				if err := n.DB().NewRaw("SELECT CAST(id AS TEXT) FROM cmts ORDER BY 1").Scan(ctx, &got); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("node %d holds %v, want %v", i, got, want)
				}
			}
			if da, dc := digest(t, a), digest(t, c); da != dc {
				t.Errorf("digests differ: a %.12s c %.12s", da, dc)
			}
		})
	}
}

// Dept and Emp reference each other (integer keys): departments have a
// manager, employees a department.
type Dept struct {
	bun.BaseModel `bun:"table:depts"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
	ManagerID     *int64 `bun:"manager_id"`
}

type Emp struct {
	bun.BaseModel `bun:"table:emps"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
	DeptID        int64  `bun:"dept_id,notnull"`
}

// TestCrossTableIntegerRefs: D0 <- E1 <- D1 (E1 works in D0, D1 is
// managed by E1): no cycle between rows, only between tables, so no order
// of the two tables writes every parent first. A fresh node receives them
// in one batch, each row under its parents.
func TestCrossTableIntegerRefs(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ddl := []string{
				"CREATE TABLE depts (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, manager_id INTEGER REFERENCES emps (id) ON DELETE SET NULL)",
				"CREATE TABLE emps (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, dept_id INTEGER NOT NULL REFERENCES depts (id) ON DELETE CASCADE)",
			}
			if kind == dbtest.KindPostgres {
				ddl = []string{
					"CREATE TABLE depts (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, manager_id BIGINT)",
					"CREATE TABLE emps (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, dept_id BIGINT NOT NULL REFERENCES depts (id) ON DELETE CASCADE)",
					"ALTER TABLE depts ADD FOREIGN KEY (manager_id) REFERENCES emps (id) ON DELETE SET NULL",
				}
			}
			a, b := modelNode(t, kind, ddl, (*Dept)(nil), (*Emp)(nil)), modelNode(t, kind, ddl, (*Dept)(nil), (*Emp)(nil))
			d0 := &Dept{Name: "d0"}
			insert(t, a, d0)
			e1 := &Emp{Name: "e1", DeptID: d0.ID}
			insert(t, a, e1)
			insert(t, a, &Dept{Name: "d1", ManagerID: &e1.ID})
			mustSync(t, b, a.AsPeer())
			var got []string
			if err := b.DB().NewRaw(`SELECT d.name || ' < ' || COALESCE(m.name, '-') || ' < ' || COALESCE(md.name, '-') FROM depts d
LEFT JOIN emps m ON m.id = d.manager_id LEFT JOIN depts md ON md.id = m.dept_id ORDER BY d.name`).Scan(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if want := []string{"d0 < - < -", "d1 < e1 < d0"}; !slices.Equal(got, want) {
				t.Fatalf("b holds %q, want %q", got, want)
			}
			sameDigests(t, a, b)
		})
	}
}

type Shelf struct {
	bun.BaseModel `bun:"table:shelves"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type Book struct {
	bun.BaseModel `bun:"table:books"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ShelfID       int64  `bun:"shelf_id,notnull"`
	Shelf         *Shelf `bun:"rel:belongs-to,join:shelf_id=id,on_delete:cascade"`
}

type Poster struct {
	bun.BaseModel `bun:"table:posters"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ShelfID       int64  `bun:"shelf_id,notnull"`
	Shelf         *Shelf `bun:"rel:belongs-to,join:shelf_id=id,on_delete:cascade"`
}

// TestSchemaIgnoresRegistrationOrder: two nodes tracking the same tables, registered in
// another order, have the same schema and sync over HTTP.
func TestSchemaIgnoresRegistrationOrder(t *testing.T) {
	t.Parallel()
	a := modelNode(t, dbtest.KindSQLite, nil, (*Shelf)(nil), (*Book)(nil), (*Poster)(nil))
	b := modelNode(t, dbtest.KindSQLite, nil, (*Shelf)(nil), (*Poster)(nil), (*Book)(nil))
	if a.Registry().Fingerprint() != b.Registry().Fingerprint() {
		t.Fatal("registry fingerprints differ: the test proves nothing")
	}
	secret := []byte("mesh secret of the schema order test, long enough")
	srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: secret}))
	defer srv.Close()
	if _, err := a.Sync(ctx, &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: a}); err != nil {
		t.Fatalf("sync over HTTP: %v (schemas %s and %s)", err, a.Schema(), b.Schema())
	}
}

// TestPendingReferenceToDeletedRow: b deleted G; a (unaware) adds P under
// G and C under P, then edits P, so the feed holds C before P. With pages
// of one, C's reference to P waits; P then becomes a delete (it
// references G, deleted on b); C must follow it, as it does when both
// arrive in one page.
func TestPendingReferenceToDeletedRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, size := range []int{1000, 1} {
			t.Run(fmt.Sprintf("%s/page=%d", kind, size), func(t *testing.T) {
				t.Parallel()
				cfg := &peer.Config{BatchSize: size}
				a, b := cfgNode(t, kind, cfg, nil, (*Part)(nil)), cfgNode(t, kind, cfg, nil, (*Part)(nil))
				g := &Part{Name: "g"}
				insert(t, a, g)
				mustSync(t, b, a.AsPeer())
				tick()
				exec(t, b, "DELETE FROM parts WHERE name = 'g'")
				tick()
				p := &Part{Name: "p", ParentID: &g.ID}
				insert(t, a, p)
				insert(t, a, &Part{Name: "c", ParentID: &p.ID})
				exec(t, a, "UPDATE parts SET name = 'p2' WHERE id = ?", p.ID)
				mustSync(t, b, a.AsPeer())
				mustSync(t, a, b.AsPeer())
				if na, nb := count(t, a, "parts"), count(t, b, "parts"); na != 0 || nb != 0 {
					t.Fatalf("a holds %d parts, b %d; want 0", na, nb)
				}
				sameDigests(t, a, b)
			})
		}
	}
}

type Acct struct {
	bun.BaseModel `bun:"table:accts"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type Profile struct {
	bun.BaseModel `bun:"table:profiles"`
	ID            int64 `bun:"id,pk,autoincrement"`
	AcctID        int64 `bun:"acct_id,notnull,unique"`
	Acct          *Acct `bun:"rel:belongs-to,join:acct_id=id,on_delete:cascade"`
}

// TestPendingReferenceUniqueColumn: two profiles (acct_id NOT NULL UNIQUE)
// arrive in a page before their accounts: while they wait, their
// references must not collide.
func TestPendingReferenceUniqueColumn(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, size := range []int{1000, 2} {
			t.Run(fmt.Sprintf("%s/page=%d", kind, size), func(t *testing.T) {
				t.Parallel()
				cfg := &peer.Config{BatchSize: size}
				mk := func() *peer.Node { return cfgNode(t, kind, cfg, nil, (*Acct)(nil), (*Profile)(nil)) }
				a, b := mk(), mk()
				u1, u2 := &Acct{Name: "u1"}, &Acct{Name: "u2"}
				insert(t, a, u1)
				insert(t, a, u2)
				insert(t, a, &Profile{AcctID: u1.ID})
				insert(t, a, &Profile{AcctID: u2.ID})
				exec(t, a, "UPDATE accts SET name = name || 'x'")
				mustSync(t, b, a.AsPeer())
				mustSync(t, a, b.AsPeer())
				if n := count(t, b, "profiles"); n != 2 {
					t.Fatalf("b holds %d profiles", n)
				}
				sameDigests(t, a, b)
			})
		}
	}
}

// TestDeleteRuleLearnsDeleteBeforeMove pins the rule's documented limit: C
// holds P, D in P and E in D. A deletes P; later B moves D under Q. C
// learns of the delete first (one sync), of the move in a later one: it
// deletes D and E with P; the move, newer, brings D back, but E stays
// deleted, and so on every node. All nodes converge on Q and D in Q.
func TestDeleteRuleLearnsDeleteBeforeMove(t *testing.T) {
	t.Parallel()
	for _, kindC := range dbtest.Kinds {
		t.Run(kindC, func(t *testing.T) {
			t.Parallel()
			mk := func(kind string) *peer.Node { return modelNode(t, kind, nil, (*Cmt)(nil)) }
			a, b, c := mk(dbtest.KindSQLite), mk(dbtest.KindSQLite), mk(kindC)
			p, d, e, q := uuid.New(), uuid.New(), uuid.New(), uuid.New()
			insert(t, a, &Cmt{ID: p})
			mustSync(t, b, a.AsPeer())
			insert(t, b, &Cmt{ID: d, ParentID: &p})
			insert(t, b, &Cmt{ID: e, ParentID: &d})
			mustSync(t, c, b.AsPeer()) // C: P, D in P, E in D
			tick()
			exec(t, a, "DELETE FROM cmts WHERE id = ?", p)
			tick()
			insert(t, b, &Cmt{ID: q})
			exec(t, b, "UPDATE cmts SET parent_id = ? WHERE id = ?", q, d)
			mustSync(t, c, a.AsPeer()) // the delete first
			if k := count(t, c, "cmts"); k != 0 {
				t.Fatalf("c holds %d comments after P's delete, want none", k)
			}
			for range 2 {
				mustSync(t, c, b.AsPeer())
				mustSync(t, a, c.AsPeer())
			}
			want := []string{d.String() + " < " + q.String(), q.String() + " < -"}
			slices.Sort(want)
			for i, n := range []*peer.Node{a, b, c} {
				var got []string
				if err := n.DB().NewRaw("SELECT CAST(id AS TEXT) || ' < ' || COALESCE(CAST(parent_id AS TEXT), '-') FROM cmts ORDER BY 1").Scan(ctx, &got); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("node %d holds %q, want %q", i, got, want)
				}
			}
			sameDigests(t, a, b, c)
		})
	}
}

type UPart struct {
	bun.BaseModel `bun:"table:uparts"`
	ID            uint64  `bun:"id,pk,autoincrement"`
	ParentID      *uint64 `bun:"parent_id"`
	Name          string  `bun:"name,notnull"`
	Parent        *UPart  `bun:"rel:belongs-to,join:parent_id=id,on_delete:cascade"`
}

// TestUnsignedPendingReference: a child arriving a page before its
// parent, in a table whose keys are unsigned: its placeholder fits the
// field.
func TestUnsignedPendingReference(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := &peer.Config{BatchSize: 1}
			a, b := cfgNode(t, kind, cfg, nil, (*UPart)(nil)), cfgNode(t, kind, cfg, nil, (*UPart)(nil))
			p := &UPart{Name: "p"}
			insert(t, a, p)
			insert(t, a, &UPart{Name: "c", ParentID: &p.ID})
			exec(t, a, "UPDATE uparts SET name = 'p2' WHERE id = ?", p.ID)
			mustSync(t, b, a.AsPeer())
			var name string
			if err := b.DB().QueryRowContext(ctx, "SELECT p.name FROM uparts c JOIN uparts p ON p.id = c.parent_id WHERE c.name = 'c'").Scan(&name); err != nil {
				t.Fatal(err)
			}
			if name != "p2" {
				t.Fatalf("c is under %q on b, want p2", name)
			}
			sameDigests(t, a, b)
		})
	}
}

// TestChildWrittenThenParentDeletedLaterPage: c deleted G. b (unaware)
// adds N under X, then moves X under G. c pulls b: N (page 1, under X,
// which c holds), then X's move under deleted G (page 2): the delete rule
// turns X into a delete and takes N with it. The apply must succeed, as it
// does when both arrive in one page.
func TestChildWrittenThenParentDeletedLaterPage(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, size := range []int{1000, 1} {
			t.Run(fmt.Sprintf("%s/page=%d", kind, size), func(t *testing.T) {
				t.Parallel()
				cfg := &peer.Config{BatchSize: size}
				mk := func() *peer.Node { return cfgNode(t, kind, cfg, nil, (*Part)(nil)) }
				b, c := mk(), mk()
				g, x := &Part{Name: "g"}, &Part{Name: "x"}
				insert(t, b, g)
				insert(t, b, x)
				mustSync(t, c, b.AsPeer())
				exec(t, c, "DELETE FROM parts WHERE name = 'g'")
				tick()
				insert(t, b, &Part{Name: "n", ParentID: &x.ID})
				exec(t, b, "UPDATE parts SET parent_id = ? WHERE id = ?", g.ID, x.ID)
				mustSync(t, c, b.AsPeer())
				mustSync(t, b, c.AsPeer())
				if nb, nc := count(t, b, "parts"), count(t, c, "parts"); nb != 0 || nc != 0 {
					t.Fatalf("b holds %d parts, c %d; want 0", nb, nc)
				}
				sameDigests(t, b, c)
			})
		}
	}
}

func partKeys(t *testing.T, n *peer.Node) []int64 {
	t.Helper()
	var ks []int64
	if err := n.DB().NewRaw("SELECT id FROM parts ORDER BY id").Scan(ctx, &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestRandomIntegerTree: three nodes with random page sizes make random
// inserts, renames, moves and deletes in a self-referencing integer-keyed
// table and sync in random pairs; then every node holds the same tree, no
// reference dangles and no placeholder is left. The default run has 2
// seeds of 80 steps on each database (under the race detector 50 steps,
// seed 1 on SQLite and seed 2 on PostgreSQL); DBSYNC_LONG=1 runs 10 seeds
// of 120.
func TestRandomIntegerTree(t *testing.T) {
	t.Parallel()
	seeds, steps := uint64(2), 80
	split := false // one seed per database
	if dbtest.Race() {
		steps, split = 50, true
	}
	if dbtest.Long() {
		seeds, steps, split = 10, 120, false
	}
	for ki, kind := range dbtest.Kinds {
		for seed := uint64(1); seed <= seeds; seed++ {
			if split && seed != uint64(ki+1) {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", kind, seed), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(seed, 7))
				var nodes []*peer.Node
				for i := 0; i < 3; i++ {
					nodes = append(nodes, cfgNode(t, kind, &peer.Config{BatchSize: 1 + rng.IntN(3)}, nil, (*Part)(nil)))
				}
				k := 0
				for step := 0; step < steps; step++ {
					n := nodes[rng.IntN(3)]
					ks := partKeys(t, n)
					k++
					name := fmt.Sprintf("n%d", k)
					r := rng.IntN(100)
					switch {
					case r < 35 || len(ks) == 0:
						p := &Part{Name: name}
						if len(ks) > 0 && rng.IntN(4) > 0 {
							x := ks[rng.IntN(len(ks))]
							p.ParentID = &x
						}
						insert(t, n, p)
					case r < 55:
						exec(t, n, "UPDATE parts SET name = ? WHERE id = ?", name, ks[rng.IntN(len(ks))])
					case r < 75:
						x := ks[rng.IntN(len(ks))]
						if rng.IntN(5) == 0 {
							exec(t, n, "UPDATE parts SET parent_id = NULL WHERE id = ?", x)
						} else {
							exec(t, n, "UPDATE parts SET parent_id = ? WHERE id = ?", ks[rng.IntN(len(ks))], x)
						}
					case r < 85:
						exec(t, n, "DELETE FROM parts WHERE id = ?", ks[rng.IntN(len(ks))])
					default:
						a, b := rng.IntN(3), rng.IntN(3)
						if a != b {
							if _, err := nodes[a].Sync(ctx, nodes[b].AsPeer()); err != nil {
								t.Fatalf("step %d: sync %d<-%d: %v", step, a, b, err)
							}
						}
					}
				}
				for round := 0; round < 3; round++ {
					for a := 0; a < 3; a++ {
						for b := 0; b < 3; b++ {
							if a != b {
								if _, err := nodes[a].Sync(ctx, nodes[b].AsPeer()); err != nil {
									t.Fatalf("final sync %d<-%d: %v", a, b, err)
								}
							}
						}
					}
				}
				for i, n := range nodes {
					var neg int
					if err := n.DB().QueryRowContext(ctx, "SELECT count(*) FROM parts WHERE parent_id < 0 OR (parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM parts))").Scan(&neg); err != nil {
						t.Fatal(err)
					}
					if neg > 0 {
						t.Fatalf("node %d: %d parts with dangling/placeholder parent", i, neg)
					}
				}
				sameDigests(t, nodes...)
			})
		}
	}
}
