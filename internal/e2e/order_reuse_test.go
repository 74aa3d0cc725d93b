package e2e_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
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

// TestOrderReuseTwoClientsOneFile, servers of both dialects: two
// client.Client on one node file. A's push loses its answer (the server
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
			ctx := context.Background()
			srv, loser, gate, url := orderReuseServer(t, kind)
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			reg, err := dbsync.Track(a.DB, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			bc, err := client.New(ctx, a.DB, reg, &client.Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			b := &synctest.Client{Name: "b", DB: a.DB, Reg: bc.Registry(), Client: bc}

			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			loser.Arm("push")
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			arrived, release := gate.arm("push")
			done := make(chan error, 1)
			go func() {
				_, err := b.Push(ctx)
				done <- err
			}()
			<-arrived
			if r, err := a.Push(ctx); err != nil || !r.Duplicate {
				t.Fatalf("a's resend: %+v, %v; want a duplicate", r, err)
			}
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (2, 'two')")
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("b's resend: %v", err)
			}
			mustSync(t, a)
			mustSync(t, b)
			if got := keys(t, srv.DB, "lists"); len(got) != 2 {
				t.Fatalf("server lists %v, want [1 2] (the node's second insert lost: %d pending)", got, pendingCount(t, a))
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}

// TestOrderReuseOneClientDiscard, servers of both dialects, one client:
// a push whose answer was lost (applied as version 1) is pending when the
// server trims past the node (reset_required). DiscardPending of a row of
// the push could not settle it (its pull refused) and went on: it deleted
// the row, which the node took for one it created and never pushed, on
// the node alone (its pulls leave its own versions out), and the
// attempt's last operation, the log's greatest, whose order the next
// local write took (before AUTOINCREMENT): the next Sync resent the
// attempt, now holding that write's operation, the server answered the
// duplicate of the first copy, and the settling deleted the operation
// unpushed. DiscardPending now settles the push through push-status, as
// a reset does: applied, its rows are no longer pending, and stay.
func TestOrderReuseOneClientDiscard(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, loser, _, url := orderReuseServer(t, kind)
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')", "INSERT INTO lists (id, name) VALUES (2, 'two')")
			loser.Arm("push")
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			// The server trims past the node's version (0).
			run(t, srv.DB, "UPDATE sync_log_floor SET version_id = 1")
			discard := []protocol.ScopeEntry{{Table: "lists", PK: "2"}}
			if err := a.DiscardPending(ctx, discard); err != nil {
				t.Fatalf("discard while the node is behind: %v", err)
			}
			if n := pendingCount(t, a); n != 0 {
				t.Fatalf("%d pending operations after the discard, want none (the push settled applied)", n)
			}
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (3, 'three')")
			mustSync(t, a)
			if got := keys(t, srv.DB, "lists"); !slices.Equal(got, []string{"1", "2", "3"}) {
				t.Fatalf("server lists %v, want [1 2 3] (node lists %v, %d pending)", got, keys(t, a.DB, "lists"), pendingCount(t, a))
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}

// TestStaleSettleKeepsHeadEntries, servers of both dialects: two
// client.Client on one node file. B resends the push attempt A's push
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
			reg, err := dbsync.Track(a.DB, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			bc, err := client.New(ctx, a.DB, reg, &client.Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			b := &synctest.Client{Name: "b", DB: a.DB, Reg: bc.Registry(), Client: bc}

			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			mustSync(t, a)
			mustSync(t, o)
			lcExec(t, o.DB, "DELETE FROM lists WHERE id = 1")
			mustSync(t, o)

			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (2, 'two')")
			loser.Arm("push")
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			arrived, release := gate.arm("push")
			done := make(chan error, 1)
			go func() {
				_, err := b.Push(ctx)
				done <- err
			}()
			<-arrived
			if r, err := a.Push(ctx); err != nil || !r.Duplicate {
				t.Fatalf("a's resend: %+v, %v; want a duplicate", r, err)
			}
			lcExec(t, a.DB, "INSERT INTO todos (id, list_id, title) VALUES (10, 1, 'needs list 1')")
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("a's pull: %v", err)
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("b's resend: %v", err)
			}
			mustSync(t, a)
			mustSync(t, o)
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ (%d pending):\n%s", pendingCount(t, a), d)
			}
			if got := keys(t, srv.DB, "lists"); !slices.Contains(got, "1") {
				t.Fatalf("server lists %v, want list 1 re-created for todo 10", got)
			}
		})
	}
}
