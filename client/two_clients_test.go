package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// pushGate serves h, and holds the next request to an armed endpoint
// until Release: it says so on arrived first.
type pushGate struct {
	h       http.Handler
	mu      sync.Mutex
	ep      string
	arrived chan struct{}
	release chan struct{}
}

func (g *pushGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	hold := g.ep != "" && path.Base(r.URL.Path) == g.ep
	var arrived, release chan struct{}
	if hold {
		g.ep, arrived, release = "", g.arrived, g.release
	}
	g.mu.Unlock()
	if hold {
		close(arrived)
		<-release
	}
	g.h.ServeHTTP(w, r)
}

func (g *pushGate) arm(ep string) (arrived, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ep, g.arrived, g.release = ep, make(chan struct{}), make(chan struct{})
	return g.arrived, g.release
}

// orderReuseServer starts a server of the test models over HTTP, its
// answers lost on demand (loser) and its requests held on demand (gate).
func orderReuseServer(t *testing.T, kind string) (*synctest.Server, *synctest.AnswerLoser, *pushGate, string) {
	t.Helper()
	db := synctest.ServerDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
	srv, h := synctest.NewHandler(t, db, synctest.Models(), nil)
	loser := synctest.NewAnswerLoser(h)
	gate := &pushGate{h: loser}
	hs := httptest.NewServer(gate)
	t.Cleanup(hs.Close)
	return &synctest.Server{DB: db, Reg: srv.Registry(), Srv: srv}, loser, gate, hs.URL + "/sync"
}

func execAll(t *testing.T, db bun.IDB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		exec(t, db, q)
	}
}

func syncNode(t *testing.T, c *synctest.Client) {
	t.Helper()
	if _, err := c.Sync(context.Background()); err != nil {
		t.Fatalf("%s sync: %v", c.Name, err)
	}
}

func listKeys(t *testing.T, db bun.IDB, table string) []string {
	t.Helper()
	var out []string
	if err := db.NewRaw("SELECT CAST(id AS TEXT) FROM ? ORDER BY id", bun.Ident(table)).Scan(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pendingOps(t *testing.T, c *synctest.Client) int {
	t.Helper()
	return count(t, c.DB, "sync_operations", "version_id IS NULL")
}

// earlierReleaseTwin returns a second client.Client on a's node database,
// both made Clients of a release before sync_client_owner, as in two
// processes: their procedures overlap, and the log's orders and the
// settling of push attempts must hold on their own.
func earlierReleaseTwin(t *testing.T, a *synctest.Client, url string) *synctest.Client {
	t.Helper()
	reg, err := dbsync.Track(a.DB, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := client.New(context.Background(), a.DB, reg, &client.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	client.AsEarlierRelease(a.Client)
	client.AsEarlierRelease(bc)
	return &synctest.Client{Name: "b", DB: a.DB, Reg: bc.Registry(), Client: bc}
}

// heldResend makes a's push lose its answer (the server applied it), has
// b resend that attempt with its request held at the server, and a
// resend it too (a duplicate, which settles the attempt); it returns
// b's outcome, once gate's release is closed.
func heldResend(t *testing.T, a, b *synctest.Client, loser *synctest.AnswerLoser, gate *pushGate) (release chan struct{}, done chan error) {
	t.Helper()
	ctx := context.Background()
	loser.Arm("push")
	if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
		t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
	}
	arrived, release := gate.arm("push")
	done = make(chan error, 1)
	go func() {
		_, err := b.Push(ctx)
		done <- err
	}()
	<-arrived
	if r, err := a.Push(ctx); err != nil || !r.Duplicate {
		t.Fatalf("a's resend: %+v, %v; want a duplicate", r, err)
	}
	return release, done
}

// TestOrderReuseTwoClientsOneFile, servers of both dialects: two
// client.Client on one node file, in two processes of a release before
// sync_client_owner (their procedures overlap: a Client of this release
// stops once another is created, dbsync.ErrNodeInUse). A's push loses its answer (the server
// applied it); B resends that attempt, its request held; A resends it
// too (a duplicate), which settles the attempt: its operations leave the
// log, which is empty then. A new local write took the order the
// attempt's last operation had (SQLite numbered it one past the greatest
// left); B's answer then settled the attempt a second time and deleted
// the new write's operation with "order <= max_order": the row stayed on
// the node, never pushed, and both clients reported nothing to push.
func TestOrderReuseTwoClientsOneFile(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv, loser, gate, url := orderReuseServer(t, kind)
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			b := earlierReleaseTwin(t, a, url)

			execAll(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			release, done := heldResend(t, a, b, loser, gate)
			execAll(t, a.DB, "INSERT INTO lists (id, name) VALUES (2, 'two')")
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("b's resend: %v", err)
			}
			syncNode(t, a)
			syncNode(t, b)
			if got := listKeys(t, srv.DB, "lists"); len(got) != 2 {
				t.Fatalf("server lists %v, want [1 2] (the node's second insert lost: %d pending)", got, pendingOps(t, a))
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}

// TestStaleSettleKeepsHeadEntries, servers of both dialects: two
// client.Client on one node file, in two processes of a release before
// sync_client_owner. B resends the push attempt A's push
// lost the answer of, its request held; A settles the attempt meanwhile
// (a duplicate), and a pull of A re-creates a list another node deleted,
// which a new todo references (D1): its insert goes at the head of the
// log, below every order. B's answer settled the attempt again, and
// deleted that insert ("order" <= max_order): the todo's push was then
// refused (its list gone on the server), or the list never re-created.
// A settling finds the attempt gone and leaves the log alone.
func TestStaleSettleKeepsHeadEntries(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, loser, gate, url := orderReuseServer(t, kind)
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			o := synctest.NewClient(t, nil, "o", &client.Config{URL: url})
			b := earlierReleaseTwin(t, a, url)

			execAll(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			syncNode(t, a)
			syncNode(t, o)
			execAll(t, o.DB, "DELETE FROM lists WHERE id = 1")
			syncNode(t, o)

			execAll(t, a.DB, "INSERT INTO lists (id, name) VALUES (2, 'two')")
			release, done := heldResend(t, a, b, loser, gate)
			execAll(t, a.DB, "INSERT INTO todos (id, list_id, title) VALUES (10, 1, 'needs list 1')")
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("a's pull: %v", err)
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("b's resend: %v", err)
			}
			syncNode(t, a)
			syncNode(t, o)
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ (%d pending):\n%s", pendingOps(t, a), d)
			}
			if got := listKeys(t, srv.DB, "lists"); !slices.Contains(got, "1") {
				t.Fatalf("server lists %v, want list 1 re-created for todo 10", got)
			}
		})
	}
}

// TestTwoClientsOneFileConverge: two client.Client on one node file,
// each on its own handle (as in two processes), insert rows and sync at
// once. Before, one's pull merged the operations of the other's push in
// flight, and moved them (K1) or settled the push twice: the node and
// the server ended with other keys, or rows the server never got,
// nothing pending. The latest Client created syncs the node: the other's
// procedures fail with dbsync.ErrNodeInUse (its Watch returns it), and
// the rows written through it are pushed by the latest.
func TestTwoClientsOneFileConverge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, _, _, url := orderReuseServer(t, dbtest.KindSQLite)
	a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
	syncNode(t, a)
	db2, err := dbtest.OpenSQLite(sqliteFile(t, a.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db2.Close() })
	reg, err := dbsync.Track(db2, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := client.New(ctx, db2, reg, &client.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	b := &synctest.Client{Name: "b", DB: db2, Reg: bc.Registry(), Client: bc}
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for i, c := range []*synctest.Client{a, b} {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				if _, err := c.DB.ExecContext(ctx, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("%d-%d", i, n)); err != nil {
					t.Errorf("%s insert: %v", c.Name, err)
					return
				}
				_, err := c.Sync(ctx)
				switch {
				case c == a && !errors.Is(err, dbsync.ErrNodeInUse):
					t.Errorf("a, created before b, syncs: %v, want ErrNodeInUse", err)
					return
				case c == b && err != nil:
					t.Errorf("b syncs: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := a.Watch(ctx, nil); !errors.Is(err, dbsync.ErrNodeInUse) {
		t.Errorf("a's Watch: %v, want ErrNodeInUse", err)
	}
	syncNode(t, b)
	if n := pendingOps(t, b); n != 0 {
		t.Fatalf("%d pending operations after the last sync", n)
	}
	if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
		t.Fatalf("node (%d lists) and server (%d) differ:\n%.3000s", len(listKeys(t, a.DB, "lists")), len(listKeys(t, srv.DB, "lists")), d)
	}
}

// sqliteFile returns the file of a SQLite database.
func sqliteFile(t *testing.T, db bun.IDB) string {
	t.Helper()
	var seq int
	var name, file string
	if err := db.QueryRowContext(context.Background(), "PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}
