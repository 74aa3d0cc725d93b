package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
)

// The -capture mode measures what capture costs an application's writes:
// the N rows inserted into a fresh SQLite file without dbsync (raw) and
// with its capture triggers installed (tracked, as on a node), each in a
// fresh process of this binary, -rounds pairs in alternating order. In
// one process the raw insert's time moved with what ran before it (the
// pure-Go SQLite's allocator keeps or returns memory): the same insert
// took 400 ms after some steps and 640 ms after others. A fresh process
// starts every insert from the same state.

// childEnv marks a process of this binary that runs one insert
// (-child-insert) for the parent's -capture mode.
const childEnv = "DBSYNC_BENCH_CHILD"

// captureOverhead runs the -capture mode for each size.
func (b *bench) captureOverhead(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "Capture overhead: %d pairs of inserts of N rows into fresh SQLite files, raw (no dbsync) and tracked (a node's capture triggers installed), each in a fresh process, in alternating order; \"vs raw\" divides the tracked min by the raw min and the tracked median by the raw median. Peak RSS is the child process's.\n\n", b.opts.rounds)
	fmt.Fprintf(b.out, lineFormat, "capture", "N", "step", "time", "CPU", "rows/s", "wire bytes", "peak RSS", "vs raw")
	fmt.Fprintln(b.out, "|----------|----------:|--------------------------------|----------:|----------:|----------:|------------:|----------:|-------:|")
	var notes []string
	for _, n := range b.opts.sizes {
		var raws, trackeds []result
		var pairs []float64
		for r := range b.opts.rounds {
			kinds := []string{"raw", "tracked"}
			if r%2 == 1 {
				slices.Reverse(kinds)
			}
			got := map[string]result{}
			for _, k := range kinds {
				res, err := b.childInsert(ctx, exe, k, n)
				if err != nil {
					return fmt.Errorf("%s insert of %d rows: %w", k, n, err)
				}
				got[k] = res
			}
			raws, trackeds = append(raws, got["raw"]), append(trackeds, got["tracked"])
			pairs = append(pairs, got["tracked"].d.Seconds()/got["raw"].d.Seconds())
		}
		raw, rawMed := minMedian(raws)
		tr, trMed := minMedian(trackeds)
		b.line("sqlite", n, "raw insert min", raw, "1.00")
		b.line("sqlite", n, "raw insert median", rawMed, "1.00")
		b.line("sqlite", n, "tracked insert min", tr, ratio(tr.d, raw.d))
		b.line("sqlite", n, "tracked insert median", trMed, ratio(trMed.d, rawMed.d))
		slices.Sort(pairs)
		notes = append(notes, fmt.Sprintf("N=%d: tracked over raw within each pair %.2f–%.2f×", n, pairs[0], pairs[len(pairs)-1]))
	}
	fmt.Fprintf(b.out, "\n%s.\n", strings.Join(notes, "; "))
	return nil
}

// childInsert runs one insert of n rows in a fresh process of exe and
// returns what it measured.
func (b *bench) childInsert(ctx context.Context, exe, kind string, n int) (result, error) {
	cmd := exec.CommandContext(ctx, exe, "-child-insert", kind, "-n", strconv.Itoa(n), "-dir", b.opts.dir)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, err
	}
	var wall, cpu, rss int64
	if _, err := fmt.Sscan(string(out), &wall, &cpu, &rss); err != nil {
		return result{}, fmt.Errorf("child said %q: %w", out, err)
	}
	return result{d: time.Duration(wall), cpu: time.Duration(cpu), rss: rss, rows: n}, nil
}

// childInsert is the child's side: one insert of n rows of the given kind
// into a fresh SQLite file in dir; it prints the wall and CPU time in
// nanoseconds and the process's peak RSS in bytes.
func childInsert(ctx context.Context, kind string, n int, dir string) (string, error) {
	b := &bench{opts: options{dir: dir}}
	b.seq = os.Getpid() // a file of its own
	db, cleanup, err := b.open(ctx, "sqlite")
	if err != nil {
		return "", err
	}
	defer cleanup()
	if err := createSchema(ctx, db, models); err != nil {
		return "", err
	}
	switch kind {
	case "raw":
	case "tracked":
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			return "", err
		}
		// Installs the capture; a client contacts its server only when
		// it syncs.
		if _, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1"}); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unknown insert %q (raw, tracked)", kind)
	}
	debug.FreeOSMemory()
	cpu0, start := cpuTime(), time.Now()
	if err := insertRows(ctx, db, n); err != nil {
		return "", err
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	if kind == "tracked" {
		var logged int
		if err := db.NewRaw("SELECT COUNT(*) FROM sync_operations").Scan(ctx, &logged); err != nil || logged != n {
			return "", fmt.Errorf("capture logged %d operations (%v), want %d", logged, err, n)
		}
	}
	return fmt.Sprintf("%d %d %d\n", wall.Nanoseconds(), cpu.Nanoseconds(), peakRSS()), nil
}
