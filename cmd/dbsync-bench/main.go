// Command dbsync-bench measures dbsync against the database doing the same
// writes itself, over real HTTP on loopback, with a SQLite and a PostgreSQL
// server database. The workload is python-sync-db's benchmark: N rows =
// N/100 cities and their persons (a foreign key), inserted on client A,
// pushed once, pulled into an empty registered client B; then a repair of
// the N rows into a fresh client; and, with -big, a server of 1,000,000 rows:
// the repair of all of them, and a pull of 10 changes. With -load, it
// measures instead many clients syncing at once for a while (load.go);
// with -trim, the log's size per row over a long run of updates by two
// nodes while the server trims it (trim.go); with -capture, what capture
// costs an insert, each insert in a fresh process (capture.go).
//
//	go run ./cmd/dbsync-bench                      # N = 10,000 and 100,000, both databases
//	go run ./cmd/dbsync-bench -n 10000 -db sqlite  # one size, one database
//	go run ./cmd/dbsync-bench -big 1000000         # add the 1,000,000-row steps
//	go run ./cmd/dbsync-bench -load -clients 20 -servers 2 -duration 30s
//	go run ./cmd/dbsync-bench -trim -trim-rows 1000 -trim-updates 100000
//	go run ./cmd/dbsync-bench -capture -n 100000 -rounds 5
//
// Each line: the step, the time, rows per second, bytes on the wire, the
// process's peak resident memory during the step, and the ratio to the raw
// baseline measured in the same run (the same rows bulk-inserted by bun into
// the same kind of database, without dbsync). The raw inserts and the
// tracked rounds (insert on A, push, pull into B) are repeated -rounds
// times, interleaved, each on fresh databases; their min and median are
// shown, a min's ratio uses the raw mins and a median's the raw medians.
//
// The peak of a step is the kernel's high-water mark of the process
// (VmHWM), reset before the step by writing to /proc/self/clear_refs; the
// whole process's peak is printed at the end.
package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/procmem"
	"github.com/go-dbsync/dbsync/server"
)

// City and Person are python-sync-db's benchmark models.
type City struct {
	bun.BaseModel `bun:"table:city"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type Person struct {
	bun.BaseModel `bun:"table:person"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Name          string  `bun:"name,notnull"`
	Score         float64 `bun:"score,notnull"`
	CityID        int64   `bun:"city_id,notnull"`
	City          *City   `bun:"rel:belongs-to,join:city_id=id"`
}

var models = []any{(*City)(nil), (*Person)(nil)}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "dbsync-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	sizes  []int
	kinds  []string
	pg     string
	big    int
	dir    string
	rounds int
	// pushChunk is client A's Config.PushChunkOperations (0: the default).
	pushChunk int
	load      *loadOptions // nil: the N-row workload
	trim      *trimOptions // nil: not the -trim mode
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dbsync-bench", flag.ContinueOnError)
	sizes := fs.String("n", "10000,100000", "row counts, comma separated")
	kinds := fs.String("db", "sqlite,postgres", "server databases: sqlite, postgres (not -load: PostgreSQL only)")
	pg := fs.String("pg", envOr("DBSYNC_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	big := fs.Int("big", 0, "rows of the big server (e.g. 1000000): repair them all, then pull 10 changes; 0 skips")
	dir := fs.String("dir", "", "work directory (default: a temporary one, removed at the end)")
	rounds := fs.Int("rounds", 3, "repetitions of the raw inserts and the tracked rounds (insert, push, pull), interleaved")
	pushChunk := fs.Int("push-chunk", 0, "operations per push chunk of client A (client.Config.PushChunkOperations; 0: its default, 10000)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	load := fs.Bool("load", false, "measure many clients syncing at once instead (flags below)")
	var lo loadOptions
	fs.IntVar(&lo.clients, "clients", 20, "load: clients, each a goroutine with its own SQLite file")
	fs.IntVar(&lo.servers, "servers", 2, "load: servers, each on its own loopback listener, all on one PostgreSQL database")
	fs.DurationVar(&lo.duration, "duration", 30*time.Second, "load: how long the clients write and sync")
	fs.IntVar(&lo.rows, "rows", 3, "load: rows each client writes before each Sync")
	fs.IntVar(&lo.shared, "conflict", 0, "load: every client writes among this many shared rows (a conflict storm); 0: each client writes its own rows")
	fs.DurationVar(&lo.think, "think", 0, "load: mean pause after each Sync (default 10ms); with -feed, between writes (default 5s)")
	fs.BoolVar(&lo.feed, "feed", false, "load: clients keep in sync with client.Watch (the change feed) and write every -think")
	fs.IntVar(&lo.writers, "writers", 0, "load with -feed: how many of the clients write (0: all); the others only watch")
	capture := fs.Bool("capture", false, "measure instead the capture's cost: raw and tracked inserts of N rows into fresh SQLite files, each in a fresh process, -rounds pairs")
	child := fs.String("child-insert", "", "internal to -capture: run one insert (raw or tracked) and print what it measured")
	trim := fs.Bool("trim", false, "measure instead the log's size per row over a long run with trimming (flags below)")
	var to trimOptions
	fs.IntVar(&to.rows, "trim-rows", 1000, "trim: rows the two nodes update")
	fs.IntVar(&to.updates, "trim-updates", 100000, "trim: row updates in all")
	fs.IntVar(&to.batch, "trim-batch", 100, "trim: rows a node updates before each Sync")
	fs.IntVar(&to.every, "trim-every", 10, "trim: Syncs between two trims")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	o := options{pg: *pg, big: *big, dir: *dir, rounds: *rounds, pushChunk: *pushChunk}
	if *load {
		if !flagSet(fs, "think") {
			lo.think = 10 * time.Millisecond
			if lo.feed {
				lo.think = feedThink
			}
		}
		if err := lo.validate(); err != nil {
			return err
		}
		o.load = &lo
	}
	if *trim {
		if err := to.validate(); err != nil {
			return err
		}
		o.trim = &to
	}
	if o.rounds < 1 {
		return fmt.Errorf("bad -rounds %d (at least 1)", o.rounds)
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 {
			return fmt.Errorf("bad -n %q (each size must be at least 100)", s)
		}
		o.sizes = append(o.sizes, n)
	}
	o.kinds = strings.Split(*kinds, ",")
	if *child != "" {
		if os.Getenv(childEnv) != "1" || o.dir == "" || len(o.sizes) != 1 {
			return errors.New("-child-insert is run by -capture")
		}
		line, err := childInsert(ctx, *child, o.sizes[0], o.dir)
		if err != nil {
			return err
		}
		_, err = io.WriteString(out, line)
		return err
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "dbsync-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	host, _ := os.Hostname()
	fmt.Fprintf(out, "dbsync-bench %s, %s/%s, %d CPUs, %s, %s, load average %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.Version(), host, loadAverage())
	b := &bench{opts: o, out: out}
	b.peak = peakRSS()
	if err := resetPeak(); err != nil {
		fmt.Fprintf(out, "Peak RSS: the process's high-water mark so far; it cannot be reset here (%v), so a step's figure may be an earlier step's.\n\n", err)
	} else {
		fmt.Fprintln(out, "Peak RSS: the process's high-water mark (VmHWM) during the step; before each step the bench returns freed memory to the OS and resets the mark (writes 5 to /proc/self/clear_refs). The whole process's peak is printed at the end.")
		fmt.Fprintln(out)
	}
	defer func() {
		fmt.Fprintf(out, "\nWhole process: peak RSS %s (the highest mark over all steps and between them).\n", mib(b.processPeak()))
	}()
	if o.load != nil {
		return b.load(ctx, *o.load)
	}
	if *capture {
		return b.captureOverhead(ctx)
	}
	if o.trim != nil {
		fmt.Fprintf(out, "Log lifecycle: two nodes take turns updating %d random rows of %d and syncing; the server trims every %d Syncs. \"ever logged\" is what the log would hold without trimming.\n\n",
			o.trim.batch, o.trim.rows, o.trim.every)
		b.trimHeader()
		var sums []string
		for _, kind := range o.kinds {
			sum, err := b.trimLog(ctx, kind, *o.trim)
			if err != nil {
				return fmt.Errorf("%s -trim: %w", kind, err)
			}
			sums = append(sums, sum)
		}
		fmt.Fprintf(out, "\n%s\n", strings.Join(sums, "\n"))
		return nil
	}
	fmt.Fprintf(out, "Raw inserts and tracked rounds (insert on A, push, pull into B): %d rounds, interleaved, each on fresh databases; min and median shown; a min's ratio uses the raw mins, a median's the raw medians.\n\n", o.rounds)
	fmt.Fprintf(out, lineFormat, "server", "N", "step", "time", "CPU", "rows/s", "wire bytes", "peak RSS", "vs raw")
	fmt.Fprintln(out, "|----------|----------:|--------------------------------|----------:|----------:|----------:|------------:|----------:|-------:|")
	for _, kind := range o.kinds {
		for _, n := range o.sizes {
			if err := b.workload(ctx, kind, n); err != nil {
				return fmt.Errorf("%s N=%d: %w", kind, n, err)
			}
		}
		if o.big > 0 {
			if err := b.bigServer(ctx, kind, o.big); err != nil {
				return fmt.Errorf("%s big: %w", kind, err)
			}
		}
	}
	fmt.Fprintln(out, "\nWhere the time of the fastest push + pull round went, from the clients' progress reports (times from the step's start):"+
		" a push is prepared once A has compressed its log and recorded the attempt (and built the body of a push sent whole),"+
		" uploaded once the server holds every chunk (A builds the next chunk while the server checks and stages the last; a push of at most 10,000 operations is sent whole),"+
		" done once the server has applied it in one transaction and A has recorded the answer;"+
		" a pull's first chunk is applied while the rest downloads (an answer over 256 KiB), and done once B commits.")
	fmt.Fprintln(out)
	fmt.Fprintln(out, strings.Join(b.timelines, "\n"))
	return nil
}

// lineFormat lays out one result line (a Markdown-friendly fixed layout).
const lineFormat = "| %-8s | %9s | %-30s | %9s | %9s | %9s | %11s | %9s | %6s |\n"

type bench struct {
	opts options
	out  io.Writer
	seq  int // numbers the databases
	// peak is the highest high-water mark read before a reset.
	peak int64
	// timelines tell where the time of each workload's fastest push +
	// pull went.
	timelines []string
}

// result is one measured step.
type result struct {
	d     time.Duration
	cpu   time.Duration // process CPU time (user + system)
	rows  int
	bytes int64
	rss   int64
}

func (b *bench) line(kind string, n int, step string, r result, ratio string) {
	rate := "-"
	if r.rows > 0 && r.d > 0 {
		rate = strconv.FormatInt(int64(float64(r.rows)/r.d.Seconds()), 10)
	}
	bytes := "-"
	if r.bytes > 0 {
		bytes = strconv.FormatInt(r.bytes, 10)
	}
	fmt.Fprintf(b.out, lineFormat, kind, strconv.Itoa(n), step, r.d.Round(time.Millisecond).String(), r.cpu.Round(time.Millisecond).String(), rate, bytes, mib(r.rss), ratio)
}

func mib(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

// measure runs fn and returns its duration and the process's peak RSS
// during it.
func (b *bench) measure(fn func() error) (result, error) {
	// Give the memory of earlier steps back, so the peak is this step's;
	// the mark so far counts for the whole process's.
	debug.FreeOSMemory()
	b.peak = max(b.peak, peakRSS())
	_ = resetPeak()
	cpu0 := cpuTime()
	start := time.Now()
	err := fn()
	return result{d: time.Since(start), cpu: cpuTime() - cpu0, rss: peakRSS()}, err
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// workload runs the N-row steps on one kind of server.
func (b *bench) workload(ctx context.Context, kind string, n int) error {
	// The raw inserts and the tracked rounds, interleaved: a round runs
	// them in turn, every other round in the reverse order, each into
	// fresh databases, so that drift on a shared machine touches both
	// sides alike. A tracked round inserts the rows on a new client A of
	// a new server, pushes them and pulls them into a new client B; the
	// last round's server is the one C repairs from.
	var rawServers, rawClients, inserts, pushes, pulls, boths []result
	var fastest tracked // the round of the fastest push + pull
	var srv *env
	defer func() {
		if srv != nil {
			srv.close()
		}
	}()
	for r := range b.opts.rounds {
		steps := []func() error{
			func() error {
				res, err := b.rawInsert(ctx, kind, n)
				rawServers = append(rawServers, res)
				return err
			},
			func() error {
				res, err := b.rawInsert(ctx, "sqlite", n)
				rawClients = append(rawClients, res)
				return err
			},
			func() error {
				if srv != nil {
					srv.close()
				}
				var t tracked
				var err error
				srv, t, err = b.trackedRound(ctx, kind, n)
				if err != nil {
					return err
				}
				inserts, pushes, pulls = append(inserts, t.insert), append(pushes, t.push), append(pulls, t.pull)
				if fastest.pushed == nil || t.push.d+t.pull.d < fastest.push.d+fastest.pull.d {
					fastest = t
				}
				boths = append(boths, result{d: t.push.d + t.pull.d, cpu: t.push.cpu + t.pull.cpu, rows: n,
					bytes: t.push.bytes + t.pull.bytes, rss: max(t.push.rss, t.pull.rss)})
				return nil
			},
		}
		if r%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	rawServer, rawServerMed := minMedian(rawServers)
	rawClient, rawClientMed := minMedian(rawClients)
	b.line(kind, n, "raw insert (server db) min", rawServer, "1.00")
	b.line(kind, n, "raw insert (server db) median", rawServerMed, "1.00")
	b.line(kind, n, "raw insert (client db) min", rawClient, "1.00")
	b.line(kind, n, "raw insert (client db) median", rawClientMed, "1.00")
	for _, s := range []struct {
		step     string
		rs       []result
		raw, med time.Duration
	}{
		{"tracked insert (A)", inserts, rawClient.d, rawClientMed.d},
		{"push A → server", pushes, rawServer.d, rawServerMed.d},
		{"pull server → B", pulls, rawClient.d, rawClientMed.d},
		{"push + pull", boths, rawServer.d + rawClient.d, rawServerMed.d + rawClientMed.d},
	} {
		lo, med := minMedian(s.rs)
		b.line(kind, n, s.step+" min", lo, ratio(lo.d, s.raw))
		b.line(kind, n, s.step+" median", med, ratio(med.d, s.med))
	}

	b.timelines = append(b.timelines, fmt.Sprintf("- %s, N = %d: %s; %s.", kind, n, fastest.pushed.summary("push"), fastest.pulled.summary("pull")))

	cc, err := srv.newClient(ctx, "c", nil)
	if err != nil {
		return err
	}
	srv.wire.Store(0)
	rep, err := b.measure(func() error {
		res, err := cc.c.Repair(ctx, nil)
		if err == nil && res.Rows != int64(n) {
			err = fmt.Errorf("repaired %d rows, want %d", res.Rows, n)
		}
		return err
	})
	if err != nil {
		return err
	}
	rep.rows, rep.bytes = n, srv.wire.Load()
	b.line(kind, n, "repair → C", rep, ratio(rep.d, rawClient.d))
	return nil
}

// tracked is what one tracked round measured, with the push's and the
// pull's timelines.
type tracked struct {
	insert, push, pull result
	pushed, pulled     *timeline
}

// timeline records when a client's progress reports (Config.OnProgress)
// of one procedure first and last reached each phase, from its start.
type timeline struct {
	mu          sync.Mutex
	start       time.Time
	first, last map[string]time.Duration
}

func (t *timeline) begin() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start, t.first, t.last = time.Now(), map[string]time.Duration{}, map[string]time.Duration{}
}

func (t *timeline) record(p dbsync.Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first == nil {
		return
	}
	d := time.Since(t.start)
	if _, ok := t.first[p.Phase]; !ok {
		t.first[p.Phase] = d
	}
	t.last[p.Phase] = d
}

// summary tells where a push's or a pull's time went.
func (t *timeline) summary(op string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := func(m map[string]time.Duration, phase string) string {
		d, ok := m[phase]
		if !ok {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	}
	if op == "push" {
		uploaded := "sent whole"
		if _, ok := t.last["upload"]; ok {
			uploaded = "uploaded at " + at(t.last, "upload")
		}
		return fmt.Sprintf("push: prepared at %s, %s, done at %s", at(t.first, "prepare"), uploaded, at(t.first, "done"))
	}
	// An answer over 256 KiB is applied while it downloads; a smaller one
	// once downloaded.
	if a, ok := t.first["apply"]; ok && a < t.last["download"] {
		return fmt.Sprintf("pull: first chunk applied at %s, downloaded at %s, done at %s", at(t.first, "apply"), at(t.last, "download"), at(t.first, "done"))
	}
	return fmt.Sprintf("pull: downloaded at %s, applied at %s, done at %s", at(t.last, "download"), at(t.first, "apply"), at(t.first, "done"))
}

// trackedRound starts a server on a fresh database of kind, inserts n rows
// on a new client A, pushes them and pulls them into a new client B. The
// caller closes the server (and with it A and B).
func (b *bench) trackedRound(ctx context.Context, kind string, n int) (*env, tracked, error) {
	t := tracked{pushed: &timeline{}, pulled: &timeline{}}
	e, err := b.newServer(ctx, kind, models)
	if err != nil {
		return nil, t, err
	}
	fail := func(err error) (*env, tracked, error) {
		e.close()
		return nil, t, err
	}
	a, err := e.newClient(ctx, "a", &client.Config{OnProgress: t.pushed.record, PushChunkOperations: b.opts.pushChunk})
	if err != nil {
		return fail(err)
	}
	if t.insert, err = b.measure(func() error { return insertRows(ctx, a.db, n) }); err != nil {
		return fail(err)
	}
	t.insert.rows = n
	e.wire.Store(0)
	t.push, err = b.measure(func() error {
		t.pushed.begin()
		res, err := a.c.Push(ctx)
		if err == nil && res.Operations != n {
			err = fmt.Errorf("pushed %d operations, want %d", res.Operations, n)
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	t.push.rows, t.push.bytes = n, e.wire.Load()
	bc, err := e.newClient(ctx, "b", &client.Config{OnProgress: t.pulled.record})
	if err != nil {
		return fail(err)
	}
	e.wire.Store(0)
	t.pull, err = b.measure(func() error {
		t.pulled.begin()
		res, err := bc.c.Pull(ctx)
		if err == nil && res.Operations != int64(n) {
			err = fmt.Errorf("pulled %d operations, want %d", res.Operations, n)
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	t.pull.rows, t.pull.bytes = n, e.wire.Load()
	return e, t, nil
}

// bigServer loads big rows into a server (direct writes, sealed into one
// version), repairs a client from it, then pulls 10 changes into that
// client.
func (b *bench) bigServer(ctx context.Context, kind string, big int) error {
	env, err := b.newServer(ctx, kind, models)
	if err != nil {
		return err
	}
	defer env.close()
	load, err := b.measure(func() error { return insertRows(ctx, env.db, big) })
	if err != nil {
		return err
	}
	load.rows = big
	b.line(kind, big, "load server (direct writes)", load, "")
	if _, err := env.srv.Seal(ctx); err != nil {
		return err
	}
	d, err := env.newClient(ctx, "d", nil)
	if err != nil {
		return err
	}
	env.wire.Store(0)
	rep, err := b.measure(func() error {
		res, err := d.c.Repair(ctx, nil)
		if err == nil && res.Rows != int64(big) {
			err = fmt.Errorf("repaired %d rows, want %d", res.Rows, big)
		}
		return err
	})
	if err != nil {
		return err
	}
	rep.rows, rep.bytes = big, env.wire.Load()
	b.line(kind, big, "repair → D", rep, "")
	// 10 changes on the server, then D pulls them.
	if _, err := env.db.ExecContext(ctx, "UPDATE person SET score = score + 1 WHERE id <= 10"); err != nil {
		return err
	}
	if _, err := env.srv.Seal(ctx); err != nil {
		return err
	}
	env.wire.Store(0)
	pull, err := b.measure(func() error {
		res, err := d.c.Pull(ctx)
		if err == nil && res.Operations != 10 {
			err = fmt.Errorf("pulled %d operations, want 10", res.Operations)
		}
		return err
	})
	if err != nil {
		return err
	}
	pull.rows, pull.bytes = 10, env.wire.Load()
	b.line(kind, big, "pull 10 changes → D", pull, "")
	return nil
}

// minMedian returns the fastest and the median of rs (by time).
func minMedian(rs []result) (fastest, median result) {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return cmp.Compare(a.d, b.d) })
	return s[0], s[(len(s)-1)/2]
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// insertRows bulk-inserts n rows: n/100 cities, the rest persons, in one
// transaction, 1000 rows per statement.
func insertRows(ctx context.Context, db *bun.DB, n int) error {
	cities := n / 100
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		cs := make([]City, 0, 1000)
		for i := range cities {
			cs = append(cs, City{Name: "city " + strconv.Itoa(i)})
			if len(cs) == cap(cs) || i == cities-1 {
				if _, err := tx.NewInsert().Model(&cs).Exec(ctx); err != nil {
					return err
				}
				cs = cs[:0]
			}
		}
		var first int64
		if err := tx.NewSelect().Model((*City)(nil)).ColumnExpr("MIN(id)").Scan(ctx, &first); err != nil {
			return err
		}
		ps := make([]Person, 0, 1000)
		for i := range n - cities {
			ps = append(ps, Person{Name: "person " + strconv.Itoa(i), Score: float64(i) * 0.5, CityID: first + int64(i%cities)})
			if len(ps) == cap(ps) || i == n-cities-1 {
				if _, err := tx.NewInsert().Model(&ps).Exec(ctx); err != nil {
					return err
				}
				ps = ps[:0]
			}
		}
		return nil
	})
}

// rawInsert measures the baseline: the rows inserted into a fresh database
// of the kind, without dbsync.
func (b *bench) rawInsert(ctx context.Context, kind string, n int) (result, error) {
	db, cleanup, err := b.open(ctx, kind)
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	if err := createSchema(ctx, db, models); err != nil {
		return result{}, err
	}
	r, err := b.measure(func() error { return insertRows(ctx, db, n) })
	r.rows = n
	return r, err
}

func createSchema(ctx context.Context, db bun.IDB, ms []any) error {
	for _, m := range ms {
		if _, err := db.NewCreateTable().Model(m).WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// open returns a fresh database: a SQLite file, or a new PostgreSQL schema.
func (b *bench) open(ctx context.Context, kind string) (*bun.DB, func(), error) {
	switch kind {
	case "sqlite":
		b.seq++
		path := filepath.Join(b.opts.dir, fmt.Sprintf("db%d.sqlite", b.seq))
		sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
			"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err != nil {
			return nil, nil, err
		}
		db := bun.NewDB(sqldb, sqlitedialect.New())
		return db, func() {
			db.Close()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(path + suffix)
			}
		}, nil
	case "postgres":
		dsn, drop, err := b.pgSchema(ctx)
		if err != nil {
			return nil, nil, err
		}
		db, err := openPG(dsn)
		if err != nil {
			drop()
			return nil, nil, err
		}
		return db, func() { db.Close(); drop() }, nil
	}
	return nil, nil, fmt.Errorf("unknown database %q", kind)
}

// pgSchema creates a fresh PostgreSQL schema and returns a URL whose
// connections use it, and a function that drops it. The name is random:
// benches run side by side, in one process or several, on one database.
func (b *bench) pgSchema(ctx context.Context) (string, func(), error) {
	schema := "dbsync_bench_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	u, err := url.Parse(b.opts.pg)
	if err != nil {
		return "", nil, err
	}
	admin, err := openPG(b.opts.pg)
	if err != nil {
		return "", nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	}, nil
}

func openPG(dsn string) (*bun.DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	sqldb, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, err
	}
	return bun.NewDB(sqldb, pgdialect.New()), nil
}

// env is a server behind real HTTP on loopback and its clients.
type env struct {
	b      *bench
	db     *bun.DB
	models []any
	srv    *server.Server
	url    string
	hs     *http.Server
	wire   atomic.Int64
	// pulls and shared count the server's pulls, and those answered with
	// another pull's answer (dbsync.Event.Shared).
	pulls, shared atomic.Int64
	closers       []func()
}

type node struct {
	db    *bun.DB
	c     *client.Client
	close func() // idempotent; env.close calls it too
}

// newServer starts a server of ms on a fresh database of kind.
func (b *bench) newServer(ctx context.Context, kind string, ms []any) (*env, error) {
	db, cleanup, err := b.open(ctx, kind)
	if err != nil {
		return nil, err
	}
	if err := createSchema(ctx, db, ms); err != nil {
		cleanup()
		return nil, err
	}
	return b.serve(ctx, db, ms, cleanup)
}

// serve starts a server of ms on db, whose tables exist, behind a
// loopback listener; cleanup runs when the env closes.
func (b *bench) serve(ctx context.Context, db *bun.DB, ms []any, cleanup func()) (*env, error) {
	e := &env{b: b, db: db, models: ms, closers: []func(){cleanup}}
	reg, err := dbsync.Track(db, ms...)
	if err != nil {
		e.close()
		return nil, err
	}
	// The benchmark registers its own nodes, many from one address.
	if e.srv, err = server.New(ctx, db, reg, &server.Config{Logger: slog.New(slog.DiscardHandler), AuthorizeRegister: server.OpenRegistration,
		OnEvent: func(_ context.Context, ev dbsync.Event) {
			if ev.Op == "pull" && ev.Err == nil {
				e.pulls.Add(1)
				if ev.Shared {
					e.shared.Add(1)
				}
			}
		}}); err != nil {
		e.close()
		return nil, err
	}
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(e.srv, &handlers.Config{Registration: handlers.RateLimit{Every: -1}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.close()
		return nil, err
	}
	e.hs = handlers.NewHTTPServer("", r, nil)
	go func() { _ = e.hs.Serve(ln) }()
	e.closers = append(e.closers, func() { e.hs.Close() }, func() { _ = e.srv.Close() })
	e.url = "http://" + ln.Addr().String() + "/sync"
	return e, nil
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// newClient registers a client on a fresh SQLite file. cfg, if not nil,
// sets its other options; its transport, when set, is counted.
func (e *env) newClient(ctx context.Context, name string, cfg *client.Config) (*node, error) {
	db, cleanup, err := e.b.open(ctx, "sqlite")
	if err != nil {
		return nil, err
	}
	n := &node{db: db, close: sync.OnceFunc(cleanup)}
	e.closers = append(e.closers, n.close)
	if err := createSchema(ctx, db, e.models); err != nil {
		return nil, err
	}
	reg, err := dbsync.Track(db, e.models...)
	if err != nil {
		return nil, err
	}
	var c client.Config
	if cfg != nil {
		c = *cfg
	}
	base := http.DefaultTransport
	if c.HTTPClient != nil && c.HTTPClient.Transport != nil {
		base = c.HTTPClient.Transport
	}
	c.URL, c.HTTPClient, c.SpoolDir = e.url, &http.Client{Transport: &counting{base: base, n: &e.wire}}, e.b.opts.dir
	if n.c, err = client.New(ctx, db, reg, &c); err != nil {
		return nil, err
	}
	if _, err := n.c.Register(ctx, nil); err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return n, nil
}

// counting counts the bytes of request and response bodies.
type counting struct {
	base http.RoundTripper
	n    *atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ContentLength > 0 {
		c.n.Add(r.ContentLength)
	}
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: c.n}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

// resetPeak resets the kernel's peak-RSS counter of this process (Linux).
func resetPeak() error { return procmem.ResetPeak() }

// processPeak returns the whole process's peak RSS: the highest mark read
// before a reset, or the mark since the last one.
func (b *bench) processPeak() int64 { return max(b.peak, peakRSS()) }

// loadAverage returns the machine's 1, 5 and 15 minute load averages
// (Linux), or "unknown".
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// peakRSS reads the process's peak resident set size (VmHWM), in bytes;
// 0 where it cannot.
func peakRSS() int64 {
	peak, _ := procmem.PeakRSS(0)
	return peak
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
