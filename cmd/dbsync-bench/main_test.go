package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// table returns the rows of the Markdown table of out whose header starts
// with first, each as a map from column title to cell.
func table(t *testing.T, out, first string) []map[string]string {
	t.Helper()
	cells := func(line string) []string {
		f := strings.Split(strings.Trim(line, "|"), "|")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		return f
	}
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "| ") || cells(line)[0] != first {
			continue
		}
		head := cells(line)
		var rows []map[string]string
		for _, l := range lines[i+2:] {
			if !strings.HasPrefix(l, "|") {
				break
			}
			row := map[string]string{}
			for k, c := range cells(l) {
				row[head[k]] = c
			}
			rows = append(rows, row)
		}
		return rows
	}
	t.Fatalf("no table headed %q in:\n%s", first, out)
	return nil
}

func number(t *testing.T, row map[string]string, col string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(row[col], 64)
	if err != nil {
		t.Fatalf("column %q: %v (row %v)", col, err, row)
	}
	return v
}

func duration(t *testing.T, row map[string]string, col string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(row[col])
	if err != nil || d <= 0 {
		t.Fatalf("column %q = %q: want a duration > 0 (row %v)", col, row[col], row)
	}
	return d
}

// loadRuns runs the load mode's tests one at a time (beside the other
// tests): each runs for a fixed duration and wants a Sync done in it.
var loadRuns sync.Mutex

// TestLoadMode runs the load mode briefly: 3 clients on 2 servers sharing
// one PostgreSQL database. Clients sync, pushes are accepted, writes reach
// other nodes, and nothing fails; the figures themselves are not checked.
func TestLoadMode(t *testing.T) {
	t.Parallel()
	for _, conflict := range []string{"0", "4"} {
		t.Run("conflict="+conflict, func(t *testing.T) {
			t.Parallel()
			loadRuns.Lock()
			defer loadRuns.Unlock()
			var out bytes.Buffer
			args := []string{"-load", "-clients", "3", "-servers", "2", "-duration", "1500ms", "-conflict", conflict,
				"-pg", dbtest.PostgresURL(t), "-dir", t.TempDir()}
			if err := run(context.Background(), args, &out); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			t.Log("\n" + out.String())
			rows := table(t, out.String(), "clients")
			if len(rows) != 1 {
				t.Fatalf("%d result rows, want 1", len(rows))
			}
			r := rows[0]
			if r["clients"] != "3" || r["servers"] != "2" {
				t.Errorf("clients %s, servers %s: want 3 and 2", r["clients"], r["servers"])
			}
			if number(t, r, "syncs/s") <= 0 || number(t, r, "pushes/s") <= 0 {
				t.Errorf("no Sync or push succeeded: %v", r)
			}
			if number(t, r, "errors") != 0 || strings.Contains(out.String(), "First error") {
				t.Errorf("errors in the run:\n%s", out.String())
			}
			number(t, r, "rebased")
			number(t, r, "refused")
			number(t, r, "gave up")
			for _, col := range []string{"Sync", "write→accepted", "write→visible"} {
				if p50, p99 := duration(t, r, col+" p50"), duration(t, r, col+" p99"); p50 > p99 {
					t.Errorf("%s: p50 %s > p99 %s", col, p50, p99)
				}
			}
			if !strings.Contains(out.String(), "Whole process: peak RSS") {
				t.Errorf("no whole-process peak in:\n%s", out.String())
			}
		})
	}
}

// TestInsertRounds runs the N-row workload at a small size: the raw
// inserts and the tracked rounds (insert, push, pull) are measured in
// rounds, each shown as min and median, and the peak RSS is explained and
// reported
// for the whole process. The two databases run side by side; the figures
// are not checked. The SQLite run pushes in chunks of 50 operations
// (-push-chunk), the PostgreSQL run whole, and each one's timeline says so.
func TestInsertRounds(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			args := []string{"-n", "200", "-db", kind, "-rounds", "3", "-dir", t.TempDir()}
			chunked := kind == dbtest.KindSQLite
			if chunked {
				args = append(args, "-push-chunk", "50")
			} else {
				args = append(args, "-pg", dbtest.PostgresURL(t))
			}
			var out bytes.Buffer
			if err := run(context.Background(), args, &out); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			t.Log("\n" + out.String())
			steps := map[string]map[string]string{}
			for _, r := range table(t, out.String(), "server") {
				steps[r["step"]] = r
			}
			for _, what := range []string{"raw insert (server db)", "raw insert (client db)", "tracked insert (A)",
				"push A → server", "pull server → B", "push + pull"} {
				lo, med := steps[what+" min"], steps[what+" median"]
				if lo == nil || med == nil {
					t.Fatalf("no min or median line for %s", what)
				}
				if duration(t, lo, "time") > duration(t, med, "time") {
					t.Errorf("%s: min %s > median %s", what, lo["time"], med["time"])
				}
			}
			if r := number(t, steps["tracked insert (A) min"], "vs raw"); r <= 0 {
				t.Errorf("tracked insert vs raw = %v", r)
			}
			if steps["repair → C"] == nil {
				t.Errorf("no repair line")
			}
			for _, s := range []string{"/proc/self/clear_refs", "3 rounds, interleaved", "Whole process: peak RSS"} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("the output does not say %q:\n%s", s, out.String())
				}
			}
			// Where the time went: each phase after the one before (times
			// are rounded to the millisecond).
			upload := `sent whole`
			if chunked {
				upload = `uploaded at (\S+)`
			}
			// (200 rows are under 256 KiB: applied once downloaded.)
			m := regexp.MustCompile(`(?m)^- ` + kind + `, N = 200: push: prepared at (\S+), ` + upload + `, done at (\S+); ` +
				`pull: downloaded at (\S+), applied at (\S+), done at (\S+)\.$`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("no timeline line for %s:\n%s", kind, out.String())
			}
			var at []time.Duration
			for _, s := range m[1:] {
				d, err := time.ParseDuration(s)
				if err != nil {
					t.Fatalf("timeline %q: %v", s, err)
				}
				at = append(at, d)
			}
			if !chunked {
				at = slices.Insert(at, 1, at[0]) // sent with the commit
			}
			if !(at[0] <= at[1] && at[1] < at[2]) || !(0 < at[3] && at[3] <= at[4] && at[4] <= at[5]) {
				t.Errorf("timeline out of order: %s", m[0])
			}
		})
	}
}

// TestLoadFeed runs the load mode with -feed briefly: 4 clients keep in
// sync with client.Watch on 2 servers, 2 of them write; writes reach the
// server and nothing fails. The figures are not checked (on a loaded
// machine no version may reach another node within the run).
func TestLoadFeed(t *testing.T) {
	t.Parallel()
	loadRuns.Lock()
	defer loadRuns.Unlock()
	var out bytes.Buffer
	args := []string{"-load", "-feed", "-clients", "4", "-writers", "2", "-servers", "2", "-duration", "2s", "-think", "200ms",
		"-pg", dbtest.PostgresURL(t), "-dir", t.TempDir()}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	r := table(t, out.String(), "clients")[0]
	if number(t, r, "pushes/s") <= 0 || number(t, r, "errors") != 0 || strings.Contains(out.String(), "First error") {
		t.Errorf("no push, or errors, in the run:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "Feed: every client ran client.Watch") {
		t.Errorf("no commit→visible figures in:\n%s", out.String())
	}
}

// TestTrimMode runs the -trim mode briefly on both databases: the log the
// server keeps ends far below what it logged in all.
func TestTrimMode(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	args := []string{"-trim", "-trim-rows", "50", "-trim-updates", "400", "-trim-batch", "20", "-trim-every", "2",
		"-pg", dbtest.PostgresURL(t), "-dir", t.TempDir()}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	rows := table(t, out.String(), "server")
	if len(rows) != 20 {
		t.Fatalf("%d result rows, want 10 per database", len(rows))
	}
	for _, r := range []map[string]string{rows[9], rows[19]} {
		if kept, ever := number(t, r, "log ops"), number(t, r, "ever logged"); kept <= 0 || kept*4 > ever {
			t.Errorf("%s: the log holds %v of %v operations ever logged", r["server"], kept, ever)
		}
	}
}

// TestMain runs this test binary as the bench itself when -capture starts
// it as a child (os.Executable is the test binary here).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "dbsync-bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCaptureMode runs the -capture mode at a small size: each insert in
// a child process, raw and tracked, shown as min and median with the
// ratios and the spread within pairs. The child checks that the tracked
// insert logged every row. The figures are not checked.
func TestCaptureMode(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-capture", "-n", "300", "-rounds", "2", "-dir", t.TempDir()}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	steps := map[string]map[string]string{}
	for _, r := range table(t, out.String(), "capture") {
		steps[r["step"]] = r
	}
	for _, what := range []string{"raw insert min", "raw insert median", "tracked insert min", "tracked insert median"} {
		if steps[what] == nil || duration(t, steps[what], "time") <= 0 {
			t.Fatalf("no line for %s", what)
		}
	}
	if r := number(t, steps["tracked insert min"], "vs raw"); r <= 0 {
		t.Errorf("tracked insert vs raw = %v", r)
	}
	if !strings.Contains(out.String(), "N=300: tracked over raw within each pair") {
		t.Errorf("no spread within pairs in:\n%s", out.String())
	}
	// A child refuses to run unless -capture started it.
	if err := run(context.Background(), []string{"-child-insert", "raw", "-n", "300", "-dir", t.TempDir()}, &out); err == nil {
		t.Error("-child-insert ran outside -capture")
	}
}
