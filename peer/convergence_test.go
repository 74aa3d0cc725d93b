package peer_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/stream"
)

var mesh = []byte("mesh secret")

// cnode is a node of the convergence simulation, also served over HTTP.
type cnode struct {
	*peer.Node
	name string
	url  string
}

// Transports a sync may use.
const (
	viaLocal = iota
	viaHTTP
	viaStream
	transportCount
)

var transportNames = []string{"local", "http", "stream"}

// syncOver syncs a with b over a transport and returns how many versions
// won on either side.
func syncOver(a, b *cnode, via int) (int, error) {
	switch via {
	case viaLocal:
		rep, err := a.Sync(ctx, b.AsPeer())
		if err != nil {
			return 0, err
		}
		return rep.Pulled + rep.Pushed, nil
	case viaHTTP:
		rep, err := a.Sync(ctx, &peerhttp.Peer{URL: b.url, Secret: mesh, Self: a.Node})
		if err != nil {
			return 0, err
		}
		return rep.Pulled + rep.Pushed, nil
	}
	c1, c2 := net.Pipe()
	cfg := &stream.Config{Secret: mesh}
	var rb *stream.Report
	var errB error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rb, errB = stream.Sync(ctx, c2, b.Node, cfg)
	}()
	ra, errA := stream.Sync(ctx, c1, a.Node, cfg)
	<-done
	if err := errors.Join(errA, errB); err != nil {
		return 0, err
	}
	return ra.Received + rb.Received, nil
}

type edge struct{ a, b int }

// topology returns the edges of a connected graph on n nodes.
func topology(name string, n int, rng *rand.Rand) []edge {
	var es []edge
	switch name {
	case "chain":
		for i := 1; i < n; i++ {
			es = append(es, edge{i - 1, i})
		}
	case "star":
		for i := 1; i < n; i++ {
			es = append(es, edge{0, i})
		}
	default: // a random spanning tree plus random extra edges
		has := map[edge]bool{}
		for i := 1; i < n; i++ {
			e := edge{rng.IntN(i), i}
			es = append(es, e)
			has[e] = true
		}
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if e := (edge{i, j}); !has[e] && rng.IntN(3) == 0 {
					es = append(es, e)
				}
			}
		}
	}
	return es
}

// world is the shared state of the simulation's writers: identities of the
// rows written so far, anywhere.
type world struct {
	mu      sync.Mutex
	notes   []uuid.UUID
	lists   []string // identities of lists that are not anchors
	todos   []string
	anchors []int64 // list keys equal on every node
	next    int
}

func (w *world) pick(s []string, rng *rand.Rand) (string, bool) {
	if len(s) == 0 {
		return "", false
	}
	return s[rng.IntN(len(s))], true
}

// op makes one random change on n. Todos only reference the anchor lists,
// whose integer keys are equal on every node: the README's limit (an
// integer key is local to each node, so a foreign key to one is only
// meaningful where keys agree). List names are never reused (they are
// unique, which peer mode does not reconcile).
func (w *world) op(n *cnode, rng *rand.Rand) error {
	w.mu.Lock()
	w.next++
	k := w.next
	var id uuid.UUID
	if len(w.notes) > 0 {
		id = w.notes[rng.IntN(len(w.notes))]
	}
	list, hasList := w.pick(w.lists, rng)
	todo, hasTodo := w.pick(w.todos, rng)
	anchor := w.anchors[rng.IntN(len(w.anchors))]
	w.mu.Unlock()
	name := fmt.Sprintf("%s-%d", n.name, k)
	db := n.DB()
	var err error
	switch r := rng.IntN(100); {
	case r < 25 || id == uuid.Nil:
		x := newNote(name)
		if rng.IntN(2) == 0 {
			s := float64(rng.IntN(100)) / 4
			x.Score = &s
		}
		x.Data = []byte(name)
		_, err = db.NewInsert().Model(x).Exec(ctx)
		w.mu.Lock()
		w.notes = append(w.notes, x.ID)
		w.mu.Unlock()
	case r < 45:
		_, err = db.ExecContext(ctx, "UPDATE notes SET body = ?, count = count + 1 WHERE id = ?", name, id)
	case r < 55:
		_, err = db.ExecContext(ctx, "DELETE FROM notes WHERE id = ?", id)
	case r < 65 || !hasList:
		ident := uuid.NewString()
		_, err = db.ExecContext(ctx, "INSERT INTO lists (name, sync_uuid) VALUES (?, ?)", name, ident)
		w.mu.Lock()
		w.lists = append(w.lists, ident)
		w.mu.Unlock()
	case r < 70:
		if rng.IntN(2) == 0 {
			_, err = db.ExecContext(ctx, "UPDATE lists SET name = ? WHERE sync_uuid = ?", name, list)
		} else {
			_, err = db.ExecContext(ctx, "UPDATE lists SET name = ? WHERE id = ?", name, anchor)
		}
	case r < 75:
		_, err = db.ExecContext(ctx, "DELETE FROM lists WHERE sync_uuid = ?", list)
	case r < 85 || !hasTodo:
		ident := uuid.NewString()
		_, err = db.ExecContext(ctx, "INSERT INTO todos (list_id, title, done, sync_uuid) VALUES (?, ?, ?, ?)", anchor, name, rng.IntN(2) == 0, ident)
		w.mu.Lock()
		w.todos = append(w.todos, ident)
		w.mu.Unlock()
	case r < 95:
		_, err = db.ExecContext(ctx, "UPDATE todos SET title = ?, done = ?, list_id = ? WHERE sync_uuid = ?", name, rng.IntN(2) == 0, anchor, todo)
	default:
		_, err = db.ExecContext(ctx, "DELETE FROM todos WHERE sync_uuid = ?", todo)
	}
	if err != nil {
		return fmt.Errorf("%s: change %d: %w", n.name, k, err)
	}
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestConvergence is the simulation reldatasync never had: N nodes (5: 3
// on SQLite and 2 on PostgreSQL, 2 rounds; 4 nodes, 2 on each, under the
// race detector; 8 nodes and 8 rounds with DBSYNC_LONG=1) in a chain, a star
// and a random graph make random inserts, updates and deletes of lists,
// todos and notes while syncing in random pairs along the graph's edges,
// several syncs at a time and writes during syncs, over the three
// transports (in process, HTTP through peerhttp.NewHandler, stream over
// net.Pipe). Then they sync until nothing moves, and every node must hold
// the same data (equal digests). The seed is fixed unless DBSYNC_SEED is
// set (DBSYNC_LONG picks a random one); it is logged.
func TestConvergence(t *testing.T) {
	t.Parallel()
	long := dbtest.Long()
	nodesN, pgN, rounds, workers := 5, 2, 2, 4
	seed := uint64(20250101)
	if dbtest.Race() {
		nodesN = 4 // a node less is a quarter less work; every topology stays mixed
	}
	if long {
		nodesN, pgN, rounds, workers = 8, 3, 8, 6
		seed = uint64(time.Now().UnixNano())
	}
	if s, err := strconv.ParseUint(os.Getenv("DBSYNC_SEED"), 10, 64); err == nil {
		seed = s
	}
	nodesN = envInt("DBSYNC_NODES", nodesN)
	for ti, topo := range []string{"chain", "star", "random"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			t.Logf("seed %d, %d nodes (%d on PostgreSQL), %d rounds", seed, nodesN, pgN, rounds)
			rng := rand.New(rand.NewPCG(seed, uint64(ti)))
			nodes := make([]*cnode, nodesN)
			for i := range nodes {
				kind := dbtest.KindSQLite
				if i%2 == 1 && i/2 < pgN {
					kind = dbtest.KindPostgres
				}
				n := newNode(t, kind, &peer.Config{BatchSize: 50})
				srv := httptest.NewServer(peerhttp.NewHandler(n, &peerhttp.Config{Secret: mesh}))
				t.Cleanup(srv.Close)
				nodes[i] = &cnode{Node: n, name: fmt.Sprintf("n%d(%s)", i, kind[:2]), url: srv.URL}
			}
			edges := topology(topo, nodesN, rng)
			t.Logf("nodes %v, edges %v", names(nodes), edges)

			// Anchor lists, written on node 0 and spread along the edges
			// before anything else, get the same keys everywhere.
			w := &world{}
			for i := range 3 {
				exec(t, nodes[0].Node, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("anchor %d", i))
			}
			// At most one pass per node; a pass that moves nothing ends it.
			for range nodesN {
				moved := 0
				for _, e := range edges {
					k, err := syncOver(nodes[e.b], nodes[e.a], viaLocal)
					if err != nil {
						t.Fatal(err)
					}
					moved += k
				}
				if moved == 0 {
					break
				}
			}
			want := anchorsOf(t, nodes[0].Node)
			for _, n := range nodes {
				if got := anchorsOf(t, n.Node); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s has anchors %v, node 0 %v", n.name, got, want)
				}
			}
			for _, a := range want {
				w.anchors = append(w.anchors, a.id)
			}

			counts := make([]int, transportCount)
			var cmu sync.Mutex
			start := time.Now()
			for round := range rounds {
				var wg sync.WaitGroup
				errs := make(chan error, nodesN+workers*3)
				for i, n := range nodes {
					wrng := rand.New(rand.NewPCG(seed+uint64(round), uint64(i)))
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 3 + wrng.IntN(6) {
							if err := w.op(n, wrng); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				for g := range workers {
					srng := rand.New(rand.NewPCG(seed+uint64(round), uint64(1000+g)))
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 3 {
							e := edges[srng.IntN(len(edges))]
							a, b := nodes[e.a], nodes[e.b]
							if srng.IntN(2) == 0 {
								a, b = b, a
							}
							via := srng.IntN(transportCount)
							if _, err := syncOver(a, b, via); err != nil {
								errs <- fmt.Errorf("round %d: %s with %s over %s: %w", round, a.name, b.name, transportNames[via], err)
								return
							}
							cmu.Lock()
							counts[via]++
							cmu.Unlock()
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				if t.Failed() {
					t.FailNow()
				}
			}
			t.Logf("%d rounds in %s; syncs: %d local, %d http, %d stream", rounds, time.Since(start).Round(time.Millisecond), counts[0], counts[1], counts[2])

			// Sync along the edges until nothing moves.
			quiet := false
			for pass := 0; pass < 4*nodesN && !quiet; pass++ {
				moved := 0
				for _, i := range rng.Perm(len(edges)) {
					e := edges[i]
					via := rng.IntN(transportCount)
					k, err := syncOver(nodes[e.a], nodes[e.b], via)
					if err != nil {
						t.Fatalf("quiet pass %d: %s with %s over %s: %v", pass, nodes[e.a].name, nodes[e.b].name, transportNames[via], err)
					}
					moved += k
				}
				quiet = moved == 0
			}
			if !quiet {
				t.Fatal("the nodes never stopped exchanging changes")
			}
			all := make([]*peer.Node, len(nodes))
			for i, n := range nodes {
				all[i] = n.Node
			}
			sameDigests(t, all...)
			sameLive(t, all...)
			t.Logf("converged: %d lists, %d todos, %d notes", count(t, all[0], "lists"), count(t, all[0], "todos"), count(t, all[0], "notes"))
		})
	}
}

type anchor struct {
	id    int64
	ident string
}

func anchorsOf(t *testing.T, n *peer.Node) []anchor {
	t.Helper()
	rows, err := n.DB().QueryContext(ctx, "SELECT id, sync_uuid FROM lists WHERE name LIKE 'anchor %' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []anchor
	for rows.Next() {
		var a anchor
		if err := rows.Scan(&a.id, &a.ident); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func names(nodes []*cnode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	return out
}

// TestHTTPPullEachOther: two SQLite nodes pull from each other over HTTP
// at the same time, many pages each. A node that kept its write
// transaction open while it fetched pages would wait for the other's
// handler, which waits for that node's write lock to record the request's
// nonce: both stall until the busy timeout, then fail.
func TestHTTPPullEachOther(t *testing.T) {
	t.Parallel()
	cfg := &peer.Config{BatchSize: 5}
	var nodes [2]*cnode
	for i := range nodes {
		n := newNode(t, dbtest.KindSQLite, cfg)
		srv := httptest.NewServer(peerhttp.NewHandler(n, &peerhttp.Config{Secret: mesh}))
		t.Cleanup(srv.Close)
		nodes[i] = &cnode{Node: n, name: fmt.Sprint(i), url: srv.URL}
	}
	for round := range 3 {
		for _, n := range nodes {
			notes := make([]*testmodels.Note, 60) // one statement: 60 versions
			for i := range notes {
				notes[i] = newNote(fmt.Sprintf("%s %d %d", n.name, round, i))
			}
			insert(t, n.Node, &notes)
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = syncOver(nodes[i], nodes[1-i], viaHTTP)
			}()
		}
		wg.Wait()
		// Nodes that waited on each other would fail here, at the busy
		// timeout: no bound on the time (a busy machine is slow too).
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d (%s): %v", round, time.Since(start).Round(time.Millisecond), err)
		}
	}
	sameDigests(t, nodes[0].Node, nodes[1].Node)
}
