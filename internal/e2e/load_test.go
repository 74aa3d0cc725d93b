//go:build unix

package e2e_test

// TestLoad (issue 7): many clients sync random changes at once against
// three servers sharing one PostgreSQL database, until quiet. Everyone
// converges to the server, no pull ever saw a version gap, no row is lost
// or duplicated; throughput and Sync latency are logged on a LOAD line.
//
//	go test -race -run TestLoad -v ./internal/e2e/          # CI size
//	go test -run TestLoad -v ./internal/e2e/                # the figures of the README (no race detector)
//	DBSYNC_LONG=1 go test -run TestLoad -v ./internal/e2e/  # more rounds (4; CI runs it)

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/stats"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// ldParams size a load run.
type ldParams struct {
	clients, servers, rounds int
}

// ldSize sizes a variant. Under the race detector a client's pull and
// push cost about ten times more CPU, and every version costs a refused
// push and a pull on most of the other clients (they all race to push
// next, so the cost grows with the square of the clients), so the README's
// test command runs 8 clients for 2 rounds, and a smaller in-process
// variant: its servers share the instrumented process with the clients,
// and it is the slower of the two there (process spawning is cheap: 3
// servers start in well under a second). Without the race detector, and
// with DBSYNC_LONG=1, 50 clients.
func ldSize(inProcess bool) ldParams {
	p := ldParams{clients: 50, servers: 3, rounds: dbtest.Size(2, 3, 4)}
	if dbtest.Race() && !dbtest.Long() {
		p.clients, p.rounds = 8, 2
		if inProcess {
			p.clients, p.rounds = 6, 1
		}
	}
	if testing.Short() && !dbtest.Long() {
		p.clients, p.rounds = 20, 1
	}
	return p
}

func TestLoad(t *testing.T) {
	t.Parallel()
	// Sequential: the two variants would skew each other's figures.
	t.Run("processes", func(t *testing.T) {
		p := ldSize(false)
		url := dbtest.PostgresSchemaURL(t)
		start := time.Now()
		var urls []string
		// One after the other: the first creates the schema.
		for range p.servers {
			urls = append(urls, mpStartServer(t, "postgres:"+url).url)
		}
		t.Logf("%d server processes started in %s", p.servers, time.Since(start).Round(time.Millisecond))
		db := mpOpenDB(t, "postgres:"+url)
		ldRun(t, p, fmt.Sprintf("%d server processes", p.servers), urls, db)
	})
	t.Run("inprocess", func(t *testing.T) {
		p := ldSize(true)
		url := dbtest.PostgresSchemaURL(t)
		ctx := context.Background()
		var urls []string
		var first *bun.DB
		for i := range p.servers {
			db, err := dbtest.OpenPostgres(url)
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(8)
			t.Cleanup(func() { _ = db.Close() })
			if i == 0 {
				first = db
				if err := testmodels.CreateSchema(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			_, h := synctest.NewHandler(t, db, testmodels.All(), nil)
			urls = append(urls, newLoopbackServer(t, h)+"/sync")
		}
		ldRun(t, p, fmt.Sprintf("%d in-process servers", p.servers), urls, first)
	})
}

// ldNode is one client of a load run.
type ldNode struct {
	i   int
	db  *bun.DB
	reg *dbsync.Registry
	c   *client.Client
	seq int
}

// ldLedger records the titles every client inserted and deleted.
type ldLedger struct {
	mu       sync.Mutex
	inserted map[string]bool
	deleted  map[string]bool
}

// ldStats gathers the figures of a run.
type ldStats struct {
	mu         sync.Mutex
	latencies  []time.Duration // of successful Sync calls
	e2e        []time.Duration // from a round's first Sync call to its success
	pullNeeded int             // Syncs that gave up after MaxSyncRounds
	network    int
	duplicates int
}

func (s *ldStats) add(d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.latencies = append(s.latencies, d)
	case errors.Is(err, dbsync.ErrPullNeeded):
		s.pullNeeded++
	default:
		s.network++
	}
}

// ldChange makes 1–4 random changes on a node: inserts into its own list,
// and updates and deletes of any todo it holds (other clients' too).
func ldChange(ctx context.Context, n *ldNode, rng *rand.Rand, led *ldLedger) error {
	for range 1 + rng.IntN(4) {
		var id int64
		var title string
		k := rng.IntN(100)
		if k >= 50 {
			err := n.db.QueryRowContext(ctx, "SELECT id, title FROM todos ORDER BY random() LIMIT 1").Scan(&id, &title)
			if err != nil {
				k = 0 // no todo yet: insert
			}
		}
		switch {
		case k < 50:
			n.seq++
			title = fmt.Sprintf("L%d-%d", n.i, n.seq)
			if _, err := n.db.ExecContext(ctx, "INSERT INTO todos (list_id, title) SELECT id, ? FROM lists WHERE name = ?", title, fmt.Sprintf("L%d", n.i)); err != nil {
				return err
			}
			led.mu.Lock()
			led.inserted[title] = true
			led.mu.Unlock()
		case k < 85:
			if _, err := n.db.ExecContext(ctx, "UPDATE todos SET done = NOT done WHERE id = ?", id); err != nil {
				return err
			}
		default:
			if _, err := n.db.ExecContext(ctx, "DELETE FROM todos WHERE id = ?", id); err != nil {
				return err
			}
			led.mu.Lock()
			led.deleted[title] = true
			led.mu.Unlock()
		}
	}
	return nil
}

// ldSync syncs until it succeeds, retrying when the server moved on too
// fast (ErrPullNeeded) or the network failed; it records every call.
func ldSync(ctx context.Context, n *ldNode, rng *rand.Rand, st *ldStats) error {
	first := time.Now()
	for try := 0; ; try++ {
		t0 := time.Now()
		res, err := n.c.Sync(ctx)
		st.add(time.Since(t0), err)
		if err == nil {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.e2e = append(st.e2e, time.Since(first))
			for _, p := range res.Pushes {
				if p.Duplicate {
					st.duplicates++
				}
			}
			return nil
		}
		if !(errors.Is(err, dbsync.ErrPullNeeded) || errors.Is(err, dbsync.ErrNetwork)) || try == 300 {
			return fmt.Errorf("client %d, try %d: %w", n.i, try, err)
		}
		// Back off a little, more after each failure: every version the
		// others push in the meantime is pulled in one go.
		time.Sleep(time.Duration(rng.Int64N(int64(10*time.Millisecond) << min(try, 4))))
	}
}

func ldRun(t *testing.T, p ldParams, what string, urls []string, sdb *bun.DB) {
	ctx := context.Background()
	nodes := make([]*ldNode, p.clients)
	errs := make(chan error, p.clients)
	var wg sync.WaitGroup
	t0 := time.Now()
	// The clients' files hold the tables and client.New's installs
	// already (copies of a template): client.New only checks them.
	dbs := make([]*bun.DB, p.clients)
	for i := range dbs {
		dbs[i] = synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, testmodels.All())
	}
	for i := range p.clients {
		wg.Go(func() {
			db := dbs[i]
			n := &ldNode{i: i, db: db}
			var err error
			n.reg, err = dbsync.Track(db, testmodels.All()...)
			if err == nil {
				n.c, err = client.New(ctx, db, n.reg, &client.Config{URL: urls[i%len(urls)], MaxSyncRounds: 5})
			}
			if err == nil {
				_, err = n.c.Register(ctx, nil)
			}
			if err == nil {
				_, err = db.ExecContext(ctx, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("L%d", i))
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	setup := time.Since(t0)

	// Everyone changes and syncs, rounds times, all at once.
	led := &ldLedger{inserted: map[string]bool{}, deleted: map[string]bool{}}
	st := &ldStats{}
	var failed sync.Once
	var firstErr error
	start := time.Now()
	for _, n := range nodes {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(n.i), 5))
			for range p.rounds {
				err := ldChange(ctx, n, rng, led)
				if err == nil {
					err = ldSync(ctx, n, rng, st)
				}
				if err != nil {
					failed.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		t.Fatal(firstErr)
	}

	// Until quiet.
	q0 := time.Now()
	latest := func() int64 {
		var v int64
		if err := sdb.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM sync_versions").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	relQuiet(t, latest, len(nodes), func(i int) (*client.SyncResult, error) { return nodes[i].c.Sync(ctx) })
	quiet := time.Since(q0)

	// Everyone holds the server's rows.
	sreg, err := dbsync.Track(sdb, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	ds := synctest.Dump(t, sdb, sreg)
	for _, n := range nodes {
		if d := synctest.Diff(synctest.Dump(t, n.db, n.reg), ds); d != "" {
			t.Fatalf("client %d and the server differ:\n%s", n.i, d[:min(len(d), 2000)])
		}
	}
	// Versions 1..N on the server; every node's run is unbroken up to N:
	// no pull ever saw a gap (a pull stores every version it sees, and
	// the next one starts after the newest).
	ndbs := make([]bun.IDB, len(nodes))
	for i, n := range nodes {
		ndbs[i] = n.db
	}
	relCheckVersions(t, sdb, ndbs...)
	// No row lost, none twice, none made up.
	titles := relStrings(t, sdb, "SELECT title FROM todos ORDER BY title")
	have := map[string]bool{}
	for _, title := range titles {
		if have[title] {
			t.Fatalf("the server holds todo %q twice", title)
		}
		have[title] = true
		if !led.inserted[title] {
			t.Fatalf("the server holds todo %q no client wrote", title)
		}
	}
	var lost []string
	for title := range led.inserted {
		if !led.deleted[title] && !have[title] {
			lost = append(lost, title)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Fatalf("%d todos never deleted are missing on the server: %v", len(lost), relShort(lost))
	}

	lat, e2e := stats.Sorted(st.latencies), stats.Sorted(st.e2e)
	versions := latest()
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	t.Logf("LOAD %s on PostgreSQL, %d clients × %d rounds%s: %d syncs in %s = %.1f syncs/s (%d versions); Sync call latency p50 %s, p99 %s; until synced (with retries) p50 %s, p99 %s; %d Sync calls gave up behind the server and were retried, %d network errors, %d duplicate pushes",
		what, p.clients, p.rounds, ldRaceNote(), len(e2e), ms(elapsed), float64(len(e2e))/elapsed.Seconds(), versions,
		ms(stats.Percentile(lat, 0.50)), ms(stats.Percentile(lat, 0.99)), ms(stats.Percentile(e2e, 0.50)), ms(stats.Percentile(e2e, 0.99)),
		st.pullNeeded, st.network, st.duplicates)
	t.Logf("%s: setup %s, quiet after %s; %d todos, %d inserted, %d deleted", what, setup.Round(time.Millisecond), quiet.Round(time.Millisecond),
		len(titles), len(led.inserted), len(led.deleted))
	if strings.Contains(what, "process") && dbtest.Race() {
		t.Logf("note: the server processes run under the race detector too")
	}
}

func ldRaceNote() string {
	if dbtest.Race() {
		return " (race detector on)"
	}
	return ""
}
