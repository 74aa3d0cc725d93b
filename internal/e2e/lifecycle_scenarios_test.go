package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/server"
)

// TestResetKeepsUniqueSwap: node A, offline past the horizon, rotates the
// unique names of three lists and moves a todo between two of them; B
// renames a fourth list meanwhile; the server trims. A's Sync resets and
// pushes its rotation: everything converges, the rotation is kept.
func TestResetKeepsUniqueSwap(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, pol := range []struct {
			name string
			p    merge.Policy
		}{{"default", merge.Default}, {"client_wins", merge.ClientWins}} {
			t.Run(kind+"/"+pol.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				srv := synctest.NewServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
				a := synctest.NewClient(t, srv, "a", &client.Config{DefaultPolicy: pol.p})
				b := synctest.NewClient(t, srv, "b", nil)
				lcExec(t, b.DB,
					"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')",
					"INSERT INTO todos (id, list_id, title) VALUES (1, 1, 't1'), (2, 2, 't2')")
				for _, n := range []*synctest.Client{b, a} {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatalf("%s sync: %v", n.Name, err)
					}
				}
				lcExec(t, a.DB,
					"UPDATE lists SET name = 'tmp' WHERE id = 1",
					"UPDATE lists SET name = 'one' WHERE id = 2",
					"UPDATE lists SET name = 'two' WHERE id = 3",
					"UPDATE lists SET name = 'three' WHERE id = 1",
					"UPDATE todos SET list_id = 3 WHERE id = 1")
				lcExec(t, b.DB, "UPDATE lists SET name = 'four-b' WHERE id = 4")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Advance(25 * time.Hour)
				lcExec(t, b.DB, "UPDATE lists SET name = 'four-bb' WHERE id = 4")
				for range 2 {
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := srv.Srv.Trim(ctx); err != nil {
					t.Fatal(err)
				}
				res, err := a.Sync(ctx)
				if err != nil {
					t.Fatalf("A sync: %v", err)
				}
				if res.Reset == nil {
					t.Fatalf("A sync did not reset: %s", res)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				want := synctest.Dump(t, srv.DB, srv.Reg)
				for _, n := range []*synctest.Client{a, b} {
					if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
						t.Fatalf("%s and the server differ:\n%s", n.Name, d)
					}
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || name FROM lists ORDER BY id")); got != "[1:three 2:one 3:two 4:four-bb]" {
					t.Fatalf("lists %s", got)
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || list_id FROM todos ORDER BY id")); got != "[1:3 2:2]" {
					t.Fatalf("todos %s", got)
				}
			})
		}
	}
}

// TestConcurrentRebaseLinkedRows: three nodes sync at the same time, round
// after round, with changes that meet on rows linked by a foreign key
// (ON DELETE CASCADE) and a unique column: a deletes and re-creates a list
// with todos, b adds and edits todos under it, c renames it and swaps the
// names of two others. Pushes are rebased on each other or refused and
// retried; after everyone syncs until nothing moves, every node equals
// the server.
func TestConcurrentRebaseLinkedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			a := synctest.NewClient(t, srv, "a", nil)
			b := synctest.NewClient(t, srv, "b", nil)
			c := synctest.NewClient(t, srv, "c", nil)
			nodes := []*synctest.Client{a, b, c}
			lcExec(t, a.DB,
				"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
				"INSERT INTO todos (id, list_id, title) VALUES (1, 1, 't1'), (2, 1, 't2'), (3, 2, 't3')")
			for _, n := range nodes {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
			}
			for round := range 6 {
				// a: the list 1 goes, or comes back under a new key.
				if round%2 == 0 {
					lcExec(t, a.DB, "DELETE FROM lists WHERE name = 'one' OR name LIKE 'one-%'")
				} else {
					lcExec(t, a.DB, fmt.Sprintf("INSERT INTO lists (name) VALUES ('one-a%d')", round))
				}
				// b: a todo under every list it holds, and an edit.
				lcExec(t, b.DB,
					fmt.Sprintf("INSERT INTO todos (list_id, title) SELECT id, 'b%d' FROM lists", round),
					"UPDATE todos SET title = title || '+b' WHERE id = (SELECT MIN(id) FROM todos)")
				// c: renames the lists it holds and swaps two names.
				lcExec(t, c.DB,
					fmt.Sprintf("UPDATE lists SET name = name || '-c%d' WHERE id = (SELECT MIN(id) FROM lists)", round),
					"UPDATE lists SET name = 'tmp' WHERE name = 'two'",
					"UPDATE lists SET name = 'two' WHERE name = 'three'",
					"UPDATE lists SET name = 'three' WHERE name = 'tmp'")
				errs := make(chan error, len(nodes))
				for _, n := range nodes {
					go func() {
						_, err := n.Sync(ctx)
						if err != nil && !errors.Is(err, dbsync.ErrPullNeeded) {
							err = fmt.Errorf("round %d: %s: %w", round, n.Name, err)
						} else {
							err = nil
						}
						errs <- err
					}()
				}
				for range nodes {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
			}
			for range 3 {
				for _, n := range nodes {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatalf("%s: %v", n.Name, err)
					}
				}
			}
			want := synctest.Dump(t, srv.DB, srv.Reg)
			for _, n := range nodes {
				if pending, err := n.Pending(ctx); err != nil || len(pending) > 0 {
					t.Fatalf("%s still has %v pending (%v)", n.Name, pending, err)
				}
				if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", n.Name, d)
				}
			}
		})
	}
}

// TestWatchAcrossRebaseAndTrim: node w only watches while a and b write
// and sync at the same time (their pushes rebased on each other) and the
// server trims every few milliseconds. Every node is live, so none is
// ever answered reset_required; w's change feed brings every version,
// once, and w ends equal to the server.
func TestWatchAcrossRebaseAndTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			var resets atomic.Int64
			onEvent := func(_ context.Context, ev dbsync.Event) {
				if ev.Op == "reset" || errors.Is(ev.Err, dbsync.ErrResetRequired) {
					resets.Add(1)
				}
			}
			a := synctest.NewClient(t, srv, "a", &client.Config{OnEvent: onEvent})
			b := synctest.NewClient(t, srv, "b", &client.Config{OnEvent: onEvent})
			w := synctest.NewClient(t, srv, "w", &client.Config{OnEvent: onEvent})
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two')")
			for _, n := range []*synctest.Client{a, b, w} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
			}
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- w.Watch(wctx, &client.WatchOptions{Wait: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
			}()
			// The trims start once every node holds a version (a new node
			// holding none resets on its first sync after a trim).
			stop := make(chan struct{})
			trimmed := make(chan int, 1)
			go func() {
				n := 0
				defer func() { trimmed <- n }()
				for {
					if _, err := srv.Srv.Trim(ctx); err != nil {
						t.Error(err)
						return
					}
					n++
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			var wg sync.WaitGroup
			for i, n := range []*synctest.Client{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range 10 {
						if _, err := n.DB.ExecContext(ctx, "INSERT INTO todos (list_id, title) VALUES (?, ?)", i+1, fmt.Sprintf("%s%d", n.Name, r)); err != nil {
							t.Error(err)
							return
						}
						if _, err := n.Sync(ctx); err != nil && !errors.Is(err, dbsync.ErrPullNeeded) {
							t.Errorf("%s: %v", n.Name, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, n := range []*synctest.Client{a, b, a} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
			}
			var latest int64
			if err := srv.DB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &latest); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				if v, err := w.Version(ctx); err == nil && v >= latest {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			close(stop)
			if n := <-trimmed; n == 0 {
				t.Fatal("no trim ran")
			}
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("watch: %v", err)
			}
			if n := resets.Load(); n != 0 {
				t.Fatalf("%d resets or reset_required answers, want none: every node is live", n)
			}
			want := synctest.Dump(t, srv.DB, srv.Reg)
			for _, n := range []*synctest.Client{a, b, w} {
				if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", n.Name, d)
				}
			}
			if got := relStrings(t, srv.DB, "SELECT COUNT(*) FROM todos"); fmt.Sprint(got) != "[20]" {
				t.Fatalf("todos on the server: %v, want 20", got)
			}
		})
	}
}

// TestResetDeleteThenTakeName: node A, offline past the horizon, deletes
// list 1 and gives its unique name to list 2. Under merge.ClientWins the
// reset keeps both (the delete frees the name) and the push applies them;
// under merge.Default the delete loses (T5) and list 1 comes back holding
// the name list 2 took: the reset fails naming list 2 (U4), applies
// nothing, and goes through once A renames it.
func TestResetDeleteThenTakeName(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, pol := range []struct {
			name string
			p    merge.Policy
		}{{"default", merge.Default}, {"client_wins", merge.ClientWins}} {
			t.Run(kind+"/"+pol.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				srv := synctest.NewServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
				a := synctest.NewClient(t, srv, "a", &client.Config{DefaultPolicy: pol.p})
				b := synctest.NewClient(t, srv, "b", nil)
				lcExec(t, b.DB,
					"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
					"INSERT INTO todos (id, list_id, title) VALUES (1, 1, 't1'), (2, 2, 't2')")
				for _, n := range []*synctest.Client{b, a} {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatalf("%s sync: %v", n.Name, err)
					}
				}
				lcExec(t, a.DB,
					"DELETE FROM lists WHERE id = 1",
					"UPDATE lists SET name = 'one' WHERE id = 2")
				clk.Advance(25 * time.Hour)
				lcExec(t, b.DB, "UPDATE lists SET name = 'three-b' WHERE id = 3")
				for range 2 {
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := srv.Srv.Trim(ctx); err != nil {
					t.Fatal(err)
				}
				_, err := a.Sync(ctx)
				if pol.name == "default" {
					var uc *dbsync.UniqueConstraintError
					if !errors.As(err, &uc) {
						t.Fatalf("A sync: %v, want a unique conflict", err)
					}
					lcExec(t, a.DB, "UPDATE lists SET name = 'two-a' WHERE id = 2")
					_, err = a.Sync(ctx)
				}
				if err != nil {
					t.Fatalf("A sync: %v", err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				want := synctest.Dump(t, srv.DB, srv.Reg)
				for _, n := range []*synctest.Client{a, b} {
					if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
						t.Fatalf("%s and the server differ:\n%s", n.Name, d)
					}
				}
				lists, todos := "[2:one 3:three-b]", "[2:2]" // the delete kept, its name taken
				if pol.name == "default" {
					lists, todos = "[1:one 2:two-a 3:three-b]", "[1:1 2:2]" // T5: the delete lost
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || name FROM lists ORDER BY id")); got != lists {
					t.Fatalf("lists %s, want %s", got, lists)
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || list_id FROM todos ORDER BY id")); got != todos {
					t.Fatalf("todos %s, want %s", got, todos)
				}
			})
		}
	}
}

// TestResetsUnderConstantTrim: every node is past the horizon at every
// trim (NodeHorizon 1ns) and the server trims every few milliseconds
// while three nodes insert todos, rename and swap lists and sync at the
// same time: their pulls and pushes race with the trims and they reset
// again and again, with pending changes. Every todo a node inserted
// reaches the server exactly once, and after everyone syncs with the
// trims stopped, every node equals the server.
func TestResetsUnderConstantTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, &server.Config{NodeHorizon: time.Nanosecond, TrimBatch: 3})
			var nodes []*synctest.Client
			for _, name := range []string{"a", "b", "c"} {
				nodes = append(nodes, synctest.NewClient(t, srv, name, nil))
			}
			lcExec(t, nodes[0].DB, "INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')")
			for _, n := range nodes {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
			}
			stop := make(chan struct{})
			trimmed := make(chan int, 1)
			go func() {
				n := 0
				defer func() { trimmed <- n }()
				for {
					if _, err := srv.Srv.Trim(ctx); err != nil {
						t.Error(err)
						return
					}
					n++
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}()
			var wg sync.WaitGroup
			var resets atomic.Int64
			for i, n := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range 8 {
						lcExec(t, n.DB,
							fmt.Sprintf("INSERT INTO todos (list_id, title) VALUES (%d, '%s%d')", i+1, n.Name, r),
							fmt.Sprintf("UPDATE lists SET name = '%s-%d' WHERE id = %d", n.Name, r, i+1))
						res, err := n.Sync(ctx)
						if res != nil && res.Reset != nil {
							resets.Add(1)
						}
						if err != nil && !errors.Is(err, dbsync.ErrPullNeeded) && !errors.Is(err, dbsync.ErrResetRequired) {
							var uc *dbsync.UniqueConstraintError
							if !errors.As(err, &uc) {
								t.Errorf("%s round %d: %v", n.Name, r, err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			if n := <-trimmed; n == 0 {
				t.Fatal("no trim ran")
			}
			if t.Failed() {
				return
			}
			for i, n := range nodes {
				// Settle the unique names the swaps left clashing.
				lcExec(t, n.DB, fmt.Sprintf("UPDATE lists SET name = 'final-%s-' || id WHERE id = %d", n.Name, i+1))
			}
			for range 3 {
				for _, n := range nodes {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatalf("%s: %v", n.Name, err)
					}
				}
			}
			want := synctest.Dump(t, srv.DB, srv.Reg)
			for _, n := range nodes {
				if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", n.Name, d)
				}
			}
			titles := relStrings(t, srv.DB, "SELECT title || ':' || COUNT(*) FROM todos GROUP BY title ORDER BY title")
			if len(titles) != 24 {
				t.Fatalf("todos on the server: %v, want 24 titles", titles)
			}
			for _, s := range titles {
				if !strings.HasSuffix(s, ":1") {
					t.Fatalf("todos on the server: %v, want each once", titles)
				}
			}
			t.Logf("%d syncs reset", resets.Load())
		})
	}
}

// TestResetServerSwapAcrossChunks: while node A is offline past the
// horizon, B swaps the unique names of two lists A holds unchanged and
// gives a third list's name to a new list, after deleting it; the server
// sends repairs a row per line. A's reset meets each swapped value in the
// line before the row that frees it (U3) and must settle it there, as a
// pull does.
func TestResetServerSwapAcrossChunks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, pol := range []struct {
			name string
			p    merge.Policy
		}{{"default", merge.Default}, {"server_wins", merge.ServerWins}} {
			t.Run(kind+"/"+pol.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				srv := synctest.NewServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour, ChunkSize: 1})
				a := synctest.NewClient(t, srv, "a", &client.Config{DefaultPolicy: pol.p})
				b := synctest.NewClient(t, srv, "b", nil)
				lcExec(t, b.DB,
					"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')",
					"INSERT INTO todos (id, list_id, title) VALUES (1, 1, 't1'), (2, 2, 't2'), (3, 3, 't3')")
				for _, n := range []*synctest.Client{b, a} {
					if _, err := n.Sync(ctx); err != nil {
						t.Fatalf("%s sync: %v", n.Name, err)
					}
				}
				lcExec(t, a.DB, "UPDATE lists SET name = 'four-a' WHERE id = 4", "UPDATE todos SET title = 't1-a' WHERE id = 1")
				lcExec(t, b.DB,
					"UPDATE lists SET name = 'tmp' WHERE id = 1",
					"UPDATE lists SET name = 'one' WHERE id = 2",
					"UPDATE lists SET name = 'two' WHERE id = 1",
					"DELETE FROM lists WHERE id = 3",
					"INSERT INTO lists (id, name) VALUES (5, 'three')")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Advance(25 * time.Hour)
				lcExec(t, b.DB, "UPDATE lists SET name = 'three-b' WHERE id = 5", "UPDATE lists SET name = 'three' WHERE id = 5")
				for range 2 {
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := srv.Srv.Trim(ctx); err != nil {
					t.Fatal(err)
				}
				res, err := a.Sync(ctx)
				if err != nil {
					t.Fatalf("A sync: %v", err)
				}
				if res.Reset == nil {
					t.Fatalf("A did not reset: %s", res)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				want := synctest.Dump(t, srv.DB, srv.Reg)
				for _, n := range []*synctest.Client{a, b} {
					if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
						t.Fatalf("%s and the server differ:\n%s", n.Name, d)
					}
				}
				lists, todos := "[1:two 2:one 4:four-a 5:three]", "[1:1:t1-a 2:2:t2]"
				if pol.name == "server_wins" {
					// T3: the node cannot tell the server did not change
					// its rows; the server's win.
					lists, todos = "[1:two 2:one 4:four 5:three]", "[1:1:t1 2:2:t2]"
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || name FROM lists ORDER BY id")); got != lists {
					t.Fatalf("lists %s, want %s", got, lists)
				}
				if got := fmt.Sprint(relStrings(t, srv.DB, "SELECT id || ':' || list_id || ':' || title FROM todos ORDER BY id")); got != todos {
					t.Fatalf("todos %s, want %s", got, todos)
				}
			})
		}
	}
}

// TestTrimBetweenChunks: node A's chunked push is half staged when the
// server trims past A's version (A silent past the horizon). The commit is
// answered reset_required; A's Sync resets (the push never applied: its
// operations stay pending, its integer keys move past the server's) and
// pushes them again: each row reaches the server once, and A, B and the
// server converge.
func TestTrimBetweenChunks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			srv := synctest.NewServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
			b := synctest.NewClient(t, srv, "b", nil)
			var chunks atomic.Int64
			hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := http.DefaultTransport.RoundTrip(r)
				if err == nil && strings.HasSuffix(r.URL.Path, "/push-chunk") && chunks.Add(1) == 1 {
					clk.Advance(25 * time.Hour)
					lcExec(t, b.DB, "INSERT INTO lists (name) VALUES ('b1'), ('b2')")
					for range 2 {
						if _, err := b.Sync(ctx); err != nil {
							t.Error(err)
						}
					}
					if tr, err := srv.Srv.Trim(ctx); err != nil || tr.RetiredNodes != 1 {
						t.Errorf("trim: %+v %v", tr, err)
					}
				}
				return resp, err
			})}
			a := synctest.NewClient(t, srv, "a", &client.Config{HTTPClient: hc, PushChunkOperations: 1})
			lcExec(t, b.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			for _, n := range []*synctest.Client{b, a} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
			}
			lcExec(t, a.DB,
				"INSERT INTO lists (name) VALUES ('a1'), ('a2')",
				"INSERT INTO todos (list_id, title) SELECT id, 'todo of ' || name FROM lists WHERE name LIKE 'a%'",
				"UPDATE lists SET name = 'one-a' WHERE id = 1")
			res, err := a.Sync(ctx)
			if err != nil {
				t.Fatalf("A sync: %v", err)
			}
			if res.Reset == nil || chunks.Load() < 2 {
				t.Fatalf("A sync: %s in %d chunks, want a reset", res, chunks.Load())
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			want := synctest.Dump(t, srv.DB, srv.Reg)
			for _, n := range []*synctest.Client{a, b} {
				if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", n.Name, d)
				}
			}
			got := fmt.Sprint(relStrings(t, srv.DB, "SELECT l.name || '/' || COALESCE(t.title, '-') FROM lists l LEFT JOIN todos t ON t.list_id = l.id ORDER BY l.name"))
			if got != "[a1/todo of a1 a2/todo of a2 b1/- b2/- one-a/-]" {
				t.Fatalf("server: %s", got)
			}
		})
	}
}

// TestFirstPushHoldsTheFloor: a new node whose first version is its own
// push (it had nothing to pull) holds the log floor like any live node:
// another node's later versions and a trim leave it able to pull. Before,
// its push noted it only as seen, holding no version: the trim raised
// the floor past it, and its next pull was answered reset_required (the
// flake of TestWatchAcrossRebaseAndTrim).
func TestFirstPushHoldsTheFloor(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			a := synctest.NewClient(t, srv, "a", nil)
			b := synctest.NewClient(t, srv, "b", nil)
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			if _, err := a.Push(ctx); err != nil { // version 1, from no version
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for r := range 2 {
				lcExec(t, b.DB, fmt.Sprintf("INSERT INTO todos (list_id, title) VALUES (1, 'b%d')", r))
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			res, err := srv.Srv.Trim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("a's pull after a trim (floor %d): %v", res.Floor, err)
			}
		})
	}
}
