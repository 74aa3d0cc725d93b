package main

// The load mode: C clients, each a goroutine with its own SQLite file and
// client.Client, write rows and sync against S servers (each its own
// server.Server and handlers on its own loopback listener) that share one
// PostgreSQL schema, for a while. Its figures: throughput, refusals, Sync
// latency, and how long a write takes to be accepted by a server and to
// reach another node.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/stats"
)

// LoadRow is the row the load clients write. Every write stamps it with
// its writer and the time, so a node that pulls it knows how old it is.
type LoadRow struct {
	bun.BaseModel `bun:"table:load_rows"`
	ID            int64 `bun:"id,pk"`
	Writer        int64 `bun:"writer,notnull"`  // the client's number + 1; 0: the seed
	Written       int64 `bun:"written,notnull"` // time of the write, Unix nanoseconds
}

var loadModels = []any{(*LoadRow)(nil)}

// loadSyncRounds bounds the pulls of a client's Sync (the default of
// client.Config.MaxSyncRounds).
const loadSyncRounds = 5

type loadOptions struct {
	clients, servers int
	duration, think  time.Duration
	rows             int  // rows a client writes before each Sync
	shared           int  // > 0: the clients write among this many shared rows
	feed             bool // clients Watch (load_feed.go) instead of Sync in a loop
	writers          int  // feed: clients that write (0: all)
}

func (o loadOptions) validate() error {
	switch {
	case o.clients < 1 || o.servers < 1:
		return fmt.Errorf("bad -clients %d / -servers %d (at least 1 each)", o.clients, o.servers)
	case o.duration <= 0 || o.think < 0:
		return fmt.Errorf("bad -duration %s / -think %s", o.duration, o.think)
	case o.rows < 1 || o.shared < 0:
		return fmt.Errorf("bad -rows %d / -conflict %d", o.rows, o.shared)
	case o.writers < 0 || o.writers > o.clients:
		return fmt.Errorf("bad -writers %d (0 to -clients)", o.writers)
	}
	return nil
}

// loadClient is one client of the load and its figures. Only its own
// goroutine touches it (the client calls OnEvent synchronously), except
// in feed mode, where its writer and its Watch share it under mu.
type loadClient struct {
	mu   sync.Mutex
	feed feedFigures

	i    int
	node *node
	ids  []int64 // the rows it writes
	// pending holds the times of its writes no accepted push carried yet.
	pending []int64
	// seen holds, per row, the write time this node last held.
	seen map[int64]int64
	// acceptedAt is when the last push was accepted.
	acceptedAt time.Time
	running    bool

	syncs, gaveUp, failed, pushes, rebased, refused, pulls, writes, unpushed int
	firstErr                                                                 error
	syncTimes, toAccepted, toVisible                                         []time.Duration
}

// onEvent counts pushes and pulls; after a pull it reads which rows
// another node wrote have arrived.
func (lc *loadClient) onEvent(ctx context.Context, e dbsync.Event) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.running {
		return
	}
	now := time.Now()
	switch {
	case e.Op == "push" && e.Err == nil:
		lc.pushes++
		lc.acceptedAt = now
		lc.feed.pushed(lc, e, now)
	case e.Op == "push" && errors.Is(e.Err, dbsync.ErrPullNeeded):
		lc.refused++
	case e.Op == "pull" && e.Err == nil:
		lc.pulls++
		if e.Operations > 0 {
			if err := lc.observe(ctx, now); err != nil && ctx.Err() == nil {
				lc.fail(fmt.Errorf("read pulled rows: %w", err))
			}
		}
		lc.feed.pulled(e, now)
	}
}

// observe records, for every row another client wrote that this node now
// holds in a version it did not hold before, the time since that write.
func (lc *loadClient) observe(ctx context.Context, now time.Time) error {
	var rows []LoadRow
	err := lc.node.db.NewSelect().Model(&rows).Where("writer NOT IN (0, ?)", lc.i+1).Scan(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if lc.seen[r.ID] != r.Written {
			lc.seen[r.ID] = r.Written
			lc.toVisible = append(lc.toVisible, now.Sub(time.Unix(0, r.Written)))
		}
	}
	return nil
}

func (lc *loadClient) fail(err error) {
	lc.failed++
	if lc.firstErr == nil {
		lc.firstErr = fmt.Errorf("client %d: %w", lc.i, err)
	}
}

// write updates rows of the client's in one transaction.
func (lc *loadClient) write(ctx context.Context, ids []int64) error {
	now := time.Now().UnixNano()
	err := lc.node.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, id := range ids {
			_, err := tx.NewUpdate().Model((*LoadRow)(nil)).
				Set("writer = ?", lc.i+1).Set("written = ?", now).Where("id = ?", id).Exec(ctx)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for range ids {
		lc.pending = append(lc.pending, now)
	}
	lc.writes += len(ids)
	return nil
}

// loop writes and syncs until the deadline.
func (lc *loadClient) loop(ctx context.Context, o loadOptions, deadline time.Time) {
	rng := rand.New(rand.NewPCG(uint64(lc.i), 17))
	lc.running = true
	defer func() { lc.running = false }()
	for time.Now().Before(deadline) {
		ids := lc.ids
		if o.shared > 0 {
			ids = ids[:0:0]
			for _, k := range rng.Perm(o.shared)[:min(o.rows, o.shared)] {
				ids = append(ids, lc.ids[k])
			}
		}
		if err := lc.write(ctx, ids); err != nil {
			lc.fail(fmt.Errorf("write: %w", err))
			return
		}
		start := time.Now()
		res, err := lc.node.c.Sync(ctx)
		took := time.Since(start)
		switch {
		case err == nil:
			lc.syncs++
			lc.syncTimes = append(lc.syncTimes, took)
			for _, p := range res.Pushes {
				if p.Rebased {
					lc.rebased++
				}
			}
			// A Sync that succeeds has pushed everything written before
			// it, unless the merge of a pull dropped the node's changes.
			if pushedNew(res) {
				for _, w := range lc.pending {
					lc.toAccepted = append(lc.toAccepted, lc.acceptedAt.Sub(time.Unix(0, w)))
				}
			} else {
				lc.unpushed += len(lc.pending)
			}
			lc.pending = lc.pending[:0]
		case errors.Is(err, dbsync.ErrPullNeeded):
			lc.gaveUp++ // still behind after MaxSyncRounds pulls: the writes wait
		default:
			lc.fail(fmt.Errorf("sync: %w", err))
		}
		if o.think > 0 {
			time.Sleep(o.think/2 + rand.N(o.think))
		}
	}
}

// pushedNew reports whether a Sync pushed new operations (not only a
// duplicate of an earlier attempt).
func pushedNew(res *client.SyncResult) bool {
	for _, p := range res.Pushes {
		if !p.Empty && !p.Duplicate {
			return true
		}
	}
	return false
}

// load runs the load mode and prints its table.
func (b *bench) load(ctx context.Context, o loadOptions) error {
	setup := time.Now()
	dsn, drop, err := b.pgSchema(ctx)
	if err != nil {
		return fmt.Errorf("load: PostgreSQL: %w", err)
	}
	defer drop()
	// The servers, one after the other: the first creates the tables and
	// the rows (each client's own, or the shared ones), sealed as the
	// first version.
	envs := make([]*env, 0, o.servers)
	defer func() {
		for _, e := range envs {
			e.close()
		}
	}()
	rows := o.shared
	if rows == 0 {
		rows = o.clients * o.rows
	}
	for i := range o.servers {
		db, err := openPG(dsn)
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(8)
		if i == 0 {
			err = createSchema(ctx, db, loadModels)
		}
		if err != nil {
			db.Close()
			return err
		}
		e, err := b.serve(ctx, db, loadModels, func() { db.Close() })
		if err != nil {
			return err
		}
		envs = append(envs, e)
	}
	seed := make([]LoadRow, rows)
	for i := range seed {
		seed[i] = LoadRow{ID: int64(i + 1)}
	}
	if _, err := envs[0].db.NewInsert().Model(&seed).Exec(ctx); err != nil {
		return fmt.Errorf("load: seed rows: %w", err)
	}
	if _, err := envs[0].srv.Seal(ctx); err != nil {
		return fmt.Errorf("load: seal the seed rows: %w", err)
	}

	// The clients, spread over the servers, each with its own
	// connections, and holding the rows.
	lcs := make([]*loadClient, o.clients)
	for i := range lcs {
		lc := &loadClient{i: i, seen: map[int64]int64{}}
		if o.shared > 0 {
			for k := range o.shared {
				lc.ids = append(lc.ids, int64(k+1))
			}
		} else {
			for k := range o.rows {
				lc.ids = append(lc.ids, int64(i*o.rows+k+1))
			}
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		defer transport.CloseIdleConnections()
		cfg := &client.Config{HTTPClient: &http.Client{Transport: transport}, OnEvent: lc.onEvent, MaxSyncRounds: loadSyncRounds}
		if lc.node, err = envs[i%len(envs)].newClient(ctx, "load "+strconv.Itoa(i), cfg); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if _, err := lc.node.c.Pull(ctx); err != nil {
			return fmt.Errorf("load: client %d: first pull: %w", i, err)
		}
		lcs[i] = lc
	}

	fmt.Fprintf(b.out, "Load: %d clients (goroutines, each its own SQLite file and client) on %d servers (each its own listener and connections, one PostgreSQL database) for %s; %s. Setup took %s.\n\n",
		o.clients, o.servers, o.duration, loopNote(o), time.Since(setup).Round(time.Millisecond))
	var wire int64
	for _, e := range envs {
		e.pulls.Store(0)
		e.shared.Store(0)
	}
	res, err := b.measure(func() error {
		deadline := time.Now().Add(o.duration)
		var wg sync.WaitGroup
		for _, lc := range lcs {
			if o.feed {
				wg.Go(func() { lc.feedLoop(ctx, o, deadline) })
			} else {
				wg.Go(func() { lc.loop(ctx, o, deadline) })
			}
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range envs {
		wire += e.wire.Load()
	}
	b.loadTable(o, res, wire, lcs)
	if o.feed {
		if err := b.feedTable(ctx, envs[0].db, lcs); err != nil {
			return err
		}
	}
	var pulls, shared int64
	for _, e := range envs {
		pulls, shared = pulls+e.pulls.Load(), shared+e.shared.Load()
	}
	fmt.Fprintf(b.out, "Server pulls during the run: %d, of which %d were answered with another pull's answer (shared).\n", pulls, shared)
	return nil
}

// loopNote says what each client does.
func loopNote(o loadOptions) string {
	if o.feed {
		return feedNote(o)
	}
	return fmt.Sprintf("before each Sync a client writes %d rows (%s), and after it pauses %s on average", o.rows, conflictNote(o), o.think)
}

func conflictNote(o loadOptions) string {
	if o.shared > 0 {
		return fmt.Sprintf("chosen among %d rows all clients share: a conflict storm", o.shared)
	}
	return "its own: no conflicts"
}

// loadTable prints the figures of a load run.
func (b *bench) loadTable(o loadOptions, r result, wire int64, lcs []*loadClient) {
	var t loadClient
	for _, lc := range lcs {
		t.syncs += lc.syncs
		t.gaveUp += lc.gaveUp
		t.failed += lc.failed
		t.pushes += lc.pushes
		t.rebased += lc.rebased
		t.refused += lc.refused
		t.pulls += lc.pulls
		t.writes += lc.writes
		t.unpushed += lc.unpushed
		t.pending = append(t.pending, lc.pending...)
		t.syncTimes = append(t.syncTimes, lc.syncTimes...)
		t.toAccepted = append(t.toAccepted, lc.toAccepted...)
		t.toVisible = append(t.toVisible, lc.toVisible...)
		if t.firstErr == nil {
			t.firstErr = lc.firstErr
		}
	}
	perSec := func(n int) string { return strconv.FormatFloat(float64(n)/r.d.Seconds(), 'f', 1, 64) }
	syncs, accepted, visible := stats.Sorted(t.syncTimes), stats.Sorted(t.toAccepted), stats.Sorted(t.toVisible)
	pct := func(s []time.Duration, p float64) string {
		if len(s) == 0 {
			return "-"
		}
		return fmtLatency(stats.Percentile(s, p))
	}
	shared := "-"
	if o.shared > 0 {
		shared = strconv.Itoa(o.shared)
	}
	fmt.Fprintf(b.out, loadFormat, "clients", "servers", "rows", "shared", "time", "syncs/s", "pushes/s", "rebased", "refused", "gave up", "errors",
		"Sync p50", "Sync p99", "write→accepted p50", "write→accepted p99", "write→visible p50", "write→visible p99")
	fmt.Fprintln(b.out, "|--------:|--------:|-----:|-------:|-------:|--------:|---------:|--------:|--------:|--------:|-------:|---------:|---------:|-------------------:|-------------------:|------------------:|------------------:|")
	fmt.Fprintf(b.out, loadFormat, strconv.Itoa(o.clients), strconv.Itoa(o.servers), strconv.Itoa(o.rows), shared, r.d.Round(10*time.Millisecond).String(),
		perSec(t.syncs), perSec(t.pushes), strconv.Itoa(t.rebased), strconv.Itoa(t.refused), strconv.Itoa(t.gaveUp), strconv.Itoa(t.failed),
		pct(syncs, 0.5), pct(syncs, 0.99), pct(accepted, 0.5), pct(accepted, 0.99), pct(visible, 0.5), pct(visible, 0.99))
	fmt.Fprintf(b.out, `
syncs/s: Sync calls that succeeded, per second (%d); pushes/s: pushes the servers accepted, per second (%d);
rebased: accepted pushes the servers applied on top of versions their node had not pulled (Sync then pulls once);
refused: pushes refused because another node changed their rows first (pull needed; Sync pulls and pushes again);
gave up: Sync calls that returned "still behind" after %d pulls (their writes wait for the next Sync);
errors: any other failure. Sync p50/p99: of the calls that succeeded.
write→accepted: from a local write to the acceptance of the push that carried it (%d writes; %d were
never pushed, merged away by a pull; %d still waited at the end).
write→visible: from a write to the pull that brought it to another node, over every node that pulled
it (%d; a write overwritten before a node pulled never reaches that node and is not counted).
Also: %d pulls, %d bytes on the wire, CPU %s, peak RSS %s.
`, t.syncs, t.pushes, loadSyncRounds, t.writes, t.unpushed, len(t.pending), len(t.toVisible), t.pulls, wire,
		r.cpu.Round(time.Millisecond), mib(r.rss))
	if t.firstErr != nil {
		fmt.Fprintf(b.out, "First error: %v\n", t.firstErr)
	}
}

const loadFormat = "| %7s | %7s | %4s | %6s | %6s | %7s | %8s | %7s | %7s | %7s | %6s | %8s | %8s | %18s | %18s | %17s | %17s |\n"

// fmtLatency rounds a latency to 3 significant digits or so.
func fmtLatency(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}
