package peer_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// Folder, Doc and Tag are a chain of foreign keys to UUID keys: docs in
// folders, tags on docs (tags have an integer key: peer mode identifies
// them by sync_uuid).
type Folder struct {
	bun.BaseModel `bun:"table:folders"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	Name          string    `bun:"name,notnull"`
}

type Doc struct {
	bun.BaseModel `bun:"table:docs"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	FolderID      uuid.UUID `bun:"folder_id,type:uuid,notnull"`
	Body          string    `bun:"body,notnull"`
	Folder        *Folder   `bun:"rel:belongs-to,join:folder_id=id,on_delete:CASCADE"`
}

type Tag struct {
	bun.BaseModel `bun:"table:tags"`
	ID            int64     `bun:"id,pk,autoincrement"`
	DocID         uuid.UUID `bun:"doc_id,type:uuid,notnull"`
	Label         string    `bun:"label,notnull"`
	Doc           *Doc      `bun:"rel:belongs-to,join:doc_id=id,on_delete:CASCADE"`
}

func folderNode(t testing.TB, kind string) *peer.Node {
	t.Helper()
	models := []any{(*Folder)(nil), (*Doc)(nil), (*Tag)(nil)}
	return synctest.NewTemplateNode(t, kind, "folders", synctest.CreateTables(models...), models, nil)
}

// folderContents lists a node's live folders, docs and tags.
func folderContents(t testing.TB, n *peer.Node) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		"SELECT 'folder ' || CAST(id AS TEXT) || ' ' || name FROM folders",
		"SELECT 'doc ' || CAST(id AS TEXT) || ' in ' || CAST(folder_id AS TEXT) || ' ' || body FROM docs",
		"SELECT 'tag ' || sync_uuid || ' on ' || CAST(doc_id AS TEXT) || ' ' || label FROM tags",
	} {
		rows, err := n.DB().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		rows.Close()
	}
	slices.Sort(out)
	return out
}

// tick lets the wall clock move, so that what follows has a later HLC on
// every node.
func tick() { time.Sleep(5 * time.Millisecond) }

// TestDeleteWinsOverReferences: a parent deleted on one node while other
// nodes edit or add its children. Without the delete rule the nodes
// refuse each other's changes forever (a child referencing a missing
// parent fails the foreign key check of every apply); with it the
// children are deleted everywhere, with the same versions, whichever order
// the changes happened and travel in. Every case runs on SQLite and on
// PostgreSQL (under the race detector the two-node cases alternate between
// them); on mixed databases the three-node cases (all of them with
// DBSYNC_LONG=1).
func TestDeleteWinsOverReferences(t *testing.T) {
	t.Parallel()
	type world = folderWorld
	// setup: three nodes sharing a folder, a doc in it and a tag on the doc.
	setup := func(t *testing.T, kinds [3]string) world {
		w := world{folder: uuid.New(), doc: uuid.New()}
		for _, k := range kinds {
			w.nodes = append(w.nodes, folderNode(t, k))
		}
		a := w.nodes[0]
		insert(t, a, &Folder{ID: w.folder, Name: "shared"})
		insert(t, a, &Doc{ID: w.doc, FolderID: w.folder, Body: "v1"})
		insert(t, a, &Tag{DocID: w.doc, Label: "t1"})
		mustSync(t, a, w.nodes[1].AsPeer())
		mustSync(t, a, w.nodes[2].AsPeer())
		sameDigests(t, w.nodes...)
		if got := folderContents(t, w.nodes[2]); len(got) != 3 {
			t.Fatalf("after setup: %q", got)
		}
		return w
	}
	deleteFolder := func(w world, n *peer.Node) { exec(t, n, "DELETE FROM folders WHERE id = ?", w.folder) }
	editDoc := func(w world, n *peer.Node) { exec(t, n, "UPDATE docs SET body = 'v2' WHERE id = ?", w.doc) }
	addDoc := func(w world, n *peer.Node) {
		insert(t, n, &Doc{ID: uuid.New(), FolderID: w.folder, Body: "new doc"})
	}
	addTag := func(w world, n *peer.Node) { insert(t, n, &Tag{DocID: w.doc, Label: "t2"}) }
	editTag := func(w world, n *peer.Node) { exec(t, n, "UPDATE tags SET label = 't1b'") }
	moveDoc := func(w world, n *peer.Node) {
		other := uuid.New()
		insert(t, n, &Folder{ID: other, Name: "other"})
		exec(t, n, "UPDATE docs SET folder_id = ? WHERE id = ?", other, w.doc)
	}
	type step struct {
		node int
		do   func(world, *peer.Node)
	}
	cases := []struct {
		name  string
		steps []step
		// survivors: what must be left (besides nothing).
		check func(t *testing.T, w world, contents []string)
	}{
		{"delete then edit the child", []step{{0, deleteFolder}, {1, editDoc}}, empty},
		{"edit the child then delete", []step{{1, editDoc}, {0, deleteFolder}}, empty},
		{"delete then add a child", []step{{0, deleteFolder}, {1, addDoc}}, empty},
		{"delete then add a grandchild", []step{{0, deleteFolder}, {1, addTag}}, empty},
		{"delete then edit a grandchild", []step{{0, deleteFolder}, {1, editTag}}, empty},
		{"three nodes: delete, edit, add", []step{{0, deleteFolder}, {1, editDoc}, {2, addDoc}, {2, addTag}}, empty},
		{"three nodes: edit, add, delete", []step{{1, editDoc}, {2, addDoc}, {0, deleteFolder}}, empty},
		{"the child moved away before the delete", []step{{1, moveDoc}, {0, deleteFolder}}, func(t *testing.T, w world, got []string) {
			// The doc left the folder on node 1 before node 0 deleted it:
			// node 0's delete of the doc (by ON DELETE CASCADE) is the
			// later version and wins; the new folder stays.
			if len(got) != 1 || !strings.HasSuffix(got[0], " other") {
				t.Fatalf("contents %q, want only the other folder", got)
			}
		}},
		{"the child moved away after the delete", []step{{0, deleteFolder}, {1, moveDoc}}, func(t *testing.T, w world, got []string) {
			// The move is later than the delete: the doc survives in its
			// new folder. Its tag, deleted by node 0's cascade after its
			// last write, stays deleted.
			if len(got) != 2 || !strings.HasPrefix(got[0], "doc "+w.doc.String()+" in ") || !strings.HasSuffix(got[1], " other") {
				t.Fatalf("contents %q, want the moved doc and its new folder", got)
			}
		}},
	}
	for ki, kinds := range [][3]string{
		{dbtest.KindSQLite, dbtest.KindSQLite, dbtest.KindSQLite},
		{dbtest.KindPostgres, dbtest.KindPostgres, dbtest.KindPostgres},
		{dbtest.KindSQLite, dbtest.KindPostgres, dbtest.KindSQLite},
	} {
		for ci, c := range cases {
			three := strings.HasPrefix(c.name, "three nodes")
			switch {
			case dbtest.Long():
			case kinds[0] != kinds[1] && !three:
				continue // mixed databases: the three-node cases (all with DBSYNC_LONG=1)
			case dbtest.Race() && kinds[0] == kinds[1] && !three && ci%2 != ki:
				// Under the race detector each two-node case runs on one
				// database, SQLite and PostgreSQL in turn (both with
				// DBSYNC_LONG=1 or without the race detector).
				continue
			}
			t.Run(fmt.Sprintf("%s-%s-%s/%s", kinds[0], kinds[1], kinds[2], c.name), func(t *testing.T) {
				t.Parallel()
				w := setup(t, kinds)
				for _, s := range c.steps {
					tick()
					s.do(w, w.nodes[s.node])
				}
				// Sync in every order until quiet: 0-1, 1-2, 2-0, twice.
				for range 2 {
					for i := range w.nodes {
						mustSync(t, w.nodes[i], w.nodes[(i+1)%len(w.nodes)].AsPeer())
					}
				}
				sameDigests(t, w.nodes...)
				got := folderContents(t, w.nodes[0])
				for _, n := range w.nodes[1:] {
					if other := folderContents(t, n); !slices.Equal(other, got) {
						t.Fatalf("nodes differ:\n%q\n%q", got, other)
					}
				}
				c.check(t, w, got)
				// Nothing more to exchange.
				for i := range w.nodes {
					if rep := mustSync(t, w.nodes[i], w.nodes[(i+1)%len(w.nodes)].AsPeer()); rep.Pulled+rep.Pushed != 0 {
						t.Fatalf("a further sync moved %d+%d versions", rep.Pulled, rep.Pushed)
					}
				}
			})
		}
	}
}

type folderWorld struct {
	nodes  []*peer.Node
	folder uuid.UUID
	doc    uuid.UUID
}

// empty checks that nothing is left.
func empty(t *testing.T, _ folderWorld, got []string) {
	t.Helper()
	if len(got) != 0 {
		t.Fatalf("contents %q, want nothing: the delete wins over what references the deleted row", got)
	}
}

// TestDeleteWinsRandom: four nodes (SQLite and PostgreSQL) add, edit, move
// and delete folders, docs and tags at random while syncing in random
// pairs concurrently; then they sync until quiet. Every node ends with the
// same data and versions, and no row references a missing one. 60 rounds
// (30 under the race detector); DBSYNC_CASCADE_ROUNDS sets another number.
func TestDeleteWinsRandom(t *testing.T) {
	t.Parallel()
	seed := uint64(envInt("DBSYNC_SEED", 7))
	rounds := 60
	if dbtest.Race() {
		rounds = 30
	}
	rounds = envInt("DBSYNC_CASCADE_ROUNDS", rounds)
	kinds := []string{dbtest.KindSQLite, dbtest.KindPostgres, dbtest.KindSQLite, dbtest.KindPostgres}
	nodes := make([]*peer.Node, len(kinds))
	for i, k := range kinds {
		nodes[i] = folderNode(t, k)
	}
	var mu sync.Mutex
	var folders, docs []uuid.UUID
	pick := func(s []uuid.UUID, rng *rand.Rand) uuid.UUID {
		if len(s) == 0 {
			return uuid.New() // references nothing: the write fails, as it would for the application
		}
		return s[rng.IntN(len(s))]
	}
	// change makes one random change on n; writes that reference a row n
	// does not hold fail (foreign keys), as they would for the application.
	change := func(n *peer.Node, rng *rand.Rand, k int) {
		mu.Lock()
		f, d := pick(folders, rng), pick(docs, rng)
		mu.Unlock()
		db := n.DB()
		switch r := rng.IntN(100); {
		case r < 15:
			id := uuid.New()
			if _, err := db.NewInsert().Model(&Folder{ID: id, Name: fmt.Sprint("f", k)}).Exec(ctx); err == nil {
				mu.Lock()
				folders = append(folders, id)
				mu.Unlock()
			}
		case r < 40:
			id := uuid.New()
			if _, err := db.NewInsert().Model(&Doc{ID: id, FolderID: f, Body: fmt.Sprint("d", k)}).Exec(ctx); err == nil {
				mu.Lock()
				docs = append(docs, id)
				mu.Unlock()
			}
		case r < 55:
			_, _ = db.ExecContext(ctx, "UPDATE docs SET body = ? WHERE id = ?", fmt.Sprint("e", k), d)
		case r < 62:
			_, _ = db.ExecContext(ctx, "UPDATE docs SET folder_id = ? WHERE id = ?", f, d)
		case r < 72:
			_, _ = db.ExecContext(ctx, "DELETE FROM folders WHERE id = ?", f)
		case r < 80:
			_, _ = db.ExecContext(ctx, "DELETE FROM docs WHERE id = ?", d)
		case r < 95:
			_, _ = db.NewInsert().Model(&Tag{DocID: d, Label: fmt.Sprint("t", k)}).Exec(ctx)
		default:
			_, _ = db.ExecContext(ctx, "DELETE FROM tags WHERE id IN (SELECT id FROM tags ORDER BY id LIMIT 1)")
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for w := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for k := range rounds {
				change(nodes[w], rng, w*100000+k)
				if rng.IntN(3) == 0 {
					other := (w + 1 + rng.IntN(len(nodes)-1)) % len(nodes)
					if _, err := nodes[w].Sync(ctx, nodes[other].AsPeer()); err != nil {
						errs <- fmt.Errorf("node %d with %d: %w", w, other, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range 3 {
		for i := range nodes {
			mustSync(t, nodes[i], nodes[(i+1)%len(nodes)].AsPeer())
		}
	}
	sameDigests(t, nodes...)
	for i, n := range nodes {
		var orphans int
		if err := n.DB().QueryRowContext(ctx, `SELECT
 (SELECT COUNT(*) FROM docs WHERE folder_id NOT IN (SELECT id FROM folders)) +
 (SELECT COUNT(*) FROM tags WHERE doc_id NOT IN (SELECT id FROM docs))`).Scan(&orphans); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Fatalf("node %d: %d rows reference missing rows", i, orphans)
		}
	}
	if c := folderContents(t, nodes[0]); len(c) == 0 {
		t.Fatal("nothing survived: the test exercised nothing")
	} else {
		t.Logf("%d live rows on every node", len(c))
	}
}

// TestFeedSkipsVanishedRows: a live version whose row is gone (deleted by
// a write the capture did not see, like a database-side cascade of a key
// that is not a UUID) is left out of the feed, and the feed's other
// changes still go out whole.
func TestFeedSkipsVanishedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			notes := []*testmodels.Note{newNote("one"), newNote("gone"), newNote("three")}
			for _, x := range notes {
				insert(t, a, x)
			}
			tx, err := a.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := dialect.Capture(ctx, tx, dialect.PeerSwitch, false); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM notes WHERE id = ?", notes[1].ID); err != nil {
				t.Fatal(err)
			}
			if err := dialect.ResetCapture(ctx, tx, dialect.PeerSwitch); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			batch, err := a.Changes(ctx, peer.Position{}, 0, uuid.Nil, false)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range batch.Changes {
				if c.Table != "notes" || c.Row == nil {
					t.Fatalf("feed entry %+v", c)
				}
				ids = append(ids, c.ID)
			}
			if len(ids) != 2 || slices.Contains(ids, notes[1].ID.String()) {
				t.Fatalf("feed %q, want the two notes still there", ids)
			}
			mustSync(t, b, a.AsPeer())
			var got []string
			if err := b.DB().NewSelect().Table("notes").Column("body").Order("body").Scan(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, []string{"one", "three"}) {
				t.Fatalf("b holds %q", got)
			}
		})
	}
}

// TestUniqueCollision: two nodes give one unique value to different rows;
// the sync fails with ErrConstraint, naming the table, and applies
// nothing; once one node renames its row, the nodes converge.
func TestUniqueCollision(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			insert(t, a, &testmodels.List{Name: "dup"})
			insert(t, b, &testmodels.List{Name: "dup"})
			insert(t, b, newNote("rides along"))
			before := digest(t, a)
			_, err := a.Sync(ctx, b.AsPeer())
			if !errors.Is(err, peer.ErrConstraint) || !strings.Contains(err.Error(), "lists") {
				t.Fatalf("sync: %v, want ErrConstraint about lists", err)
			}
			if digest(t, a) != before {
				t.Fatal("a failed sync changed a")
			}
			exec(t, b, "UPDATE lists SET name = 'dup (b)' WHERE name = 'dup'")
			mustSync(t, a, b.AsPeer())
			sameDigests(t, a, b)
		})
	}
}

// TestDeleteWinsIntegerKeys: a list (integer key) deleted on one node while
// another adds a todo to it: the node that receives the delete deletes its
// todo too, with a tombstone that reaches the other node; no todo is left
// referencing a missing list, on either database. Also when only A starts
// syncs (a client and its server): A's pull of B's todo in the list A
// deleted must not fail, which would keep A from ever pushing the delete.
func TestDeleteWinsIntegerKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, oneWay := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one-way=%t", kind, oneWay), func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, kind, nil), newNode(t, kind, nil)
				insert(t, a, &testmodels.List{Name: "groceries"})
				var listID int64
				if err := a.DB().QueryRowContext(ctx, "SELECT id FROM lists").Scan(&listID); err != nil {
					t.Fatal(err)
				}
				insert(t, a, &testmodels.Todo{ListID: listID, Title: "milk"})
				mustSync(t, a, b.AsPeer())
				var bList int64
				if err := b.DB().QueryRowContext(ctx, "SELECT id FROM lists").Scan(&bList); err != nil {
					t.Fatal(err)
				}
				tick()
				exec(t, a, "DELETE FROM lists")
				tick()
				insert(t, b, &testmodels.Todo{ListID: bList, Title: "bread"})
				if oneWay {
					mustSync(t, a, b.AsPeer())
					mustSync(t, a, b.AsPeer())
				} else {
					mustSync(t, b, a.AsPeer())
					mustSync(t, a, b.AsPeer())
				}
				sameDigests(t, a, b)
				for i, n := range []*peer.Node{a, b} {
					if todos, lists := count(t, n, "todos"), count(t, n, "lists"); todos != 0 || lists != 0 {
						t.Fatalf("node %d holds %d todos and %d lists, want none", i, todos, lists)
					}
				}
			})
		}
	}
}
