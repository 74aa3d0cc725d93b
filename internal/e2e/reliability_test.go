//go:build unix

package e2e_test

// Faults (issue 7): real processes killed with SIGKILL in the middle of a
// pull, a repair and a server's push; TCP connections reset mid-stream;
// a PostgreSQL restart under load. The lost push reply, a push's client
// killed after sending, and streams cut inside the client's transport are
// covered by client/client_test.go (TestLostPushReply*,
// TestPushNeverArrived, TestPullCut, TestRepairCut) and TestMultiProcess.
//
//	go test -race -run 'TestKill|TestServerKilled|TestNetworkCut|TestPostgresRestart' ./internal/e2e/
//	DBSYNC_LONG=1 go test -run … ./internal/e2e/   # more rows, more kills, more clients
//
// Under the race detector the data sets are smaller (see dbtest.Race).

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// relNodeState is everything a pull or a repair may change on a node.
type relNodeState struct {
	Dump     map[string][]string
	Versions []string // "version/node"
	Ops      []string // "order table row command version"
	Attempts []string
	Capture  bool
}

func (s *relNodeState) String() string {
	var b strings.Builder
	tables := make([]string, 0, len(s.Dump))
	for t := range s.Dump {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(&b, "%s: %d rows\n", t, len(s.Dump[t]))
	}
	fmt.Fprintf(&b, "versions %v\noperations %d %v\nattempts %v\ncapture %v\n", relShort(s.Versions), len(s.Ops), relShort(s.Ops), s.Attempts, s.Capture)
	return b.String()
}

func relShort(s []string) []string {
	if len(s) > 8 {
		return append(slices.Clone(s[:4]), "…", s[len(s)-3], s[len(s)-2], s[len(s)-1])
	}
	return s
}

// relEqual compares two node states; the text says how they differ.
func relEqual(a, b *relNodeState) (bool, string) {
	var diffs []string
	if d := synctest.Diff(a.Dump, b.Dump); d != "" {
		if len(d) > 2000 {
			d = d[:2000] + "…"
		}
		diffs = append(diffs, "rows: "+d)
	}
	if !slices.Equal(a.Versions, b.Versions) {
		diffs = append(diffs, fmt.Sprintf("versions %v / %v", relShort(a.Versions), relShort(b.Versions)))
	}
	if !slices.Equal(a.Ops, b.Ops) {
		diffs = append(diffs, fmt.Sprintf("operations (%d) %v / (%d) %v", len(a.Ops), relShort(a.Ops), len(b.Ops), relShort(b.Ops)))
	}
	if !slices.Equal(a.Attempts, b.Attempts) {
		diffs = append(diffs, fmt.Sprintf("push attempts %v / %v", a.Attempts, b.Attempts))
	}
	if a.Capture != b.Capture {
		diffs = append(diffs, fmt.Sprintf("capture %v / %v", a.Capture, b.Capture))
	}
	return len(diffs) == 0, strings.Join(diffs, "\n")
}

// relStrings runs a query whose rows are turned into strings by joining
// their columns with spaces.
func relStrings(t *testing.T, db bun.IDB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = v.String
			if !v.Valid {
				parts[i] = "-"
			}
		}
		out = append(out, strings.Join(parts, "/"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// relReadNode reads the state of a node's SQLite file (no process may be
// using it).
func relReadNode(t *testing.T, path string) *relNodeState {
	t.Helper()
	db, err := dbtest.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return relNodeOf(t, db)
}

// relNodeOf reads the state of an open node database.
func relNodeOf(t *testing.T, db *bun.DB) *relNodeState {
	t.Helper()
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	s := &relNodeState{
		Dump:     synctest.Dump(t, db, reg),
		Versions: relStrings(t, db, "SELECT version_id, node_id FROM sync_versions ORDER BY version_id"),
		Ops:      relStrings(t, db, `SELECT "order", content_type_id, row_id, command, version_id FROM sync_operations ORDER BY "order"`),
		Attempts: relStrings(t, db, "SELECT push_id, max_order, base_version FROM sync_push_attempts ORDER BY push_id"),
	}
	if err := db.QueryRowContext(context.Background(), "SELECT capture FROM sync_state WHERE id = 1").Scan(&s.Capture); err != nil {
		t.Fatal(err)
	}
	return s
}

// relAfterPull is the state a node that holds no pending change reaches by
// pulling everything: the server's rows and versions, no operations.
func relAfterPull(t *testing.T, srv *synctest.Server) *relNodeState {
	t.Helper()
	return &relNodeState{
		Dump:     synctest.Dump(t, srv.DB, srv.Reg),
		Versions: relStrings(t, srv.DB, "SELECT version_id, node_id FROM sync_versions ORDER BY version_id"),
		Capture:  true,
	}
}

// relAfterRepair is the state a repair leaves: the server's rows, its
// latest version (without a node), no operations.
func relAfterRepair(t *testing.T, srv *synctest.Server) *relNodeState {
	t.Helper()
	s := &relNodeState{Dump: synctest.Dump(t, srv.DB, srv.Reg), Capture: true}
	if v := relStrings(t, srv.DB, "SELECT MAX(version_id) FROM sync_versions"); len(v) == 1 && v[0] != "-" {
		s.Versions = []string{v[0] + "/-"}
	}
	return s
}

// relBulk inserts n todos titled prefix-0… into the list named list
// (created if missing) on db, in one statement: the capture triggers log
// every row.
func relBulk(t *testing.T, db *bun.DB, list, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "INSERT INTO lists (name) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM lists WHERE name = ?)", list, list); err != nil {
		t.Fatal(err)
	}
	q := `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO todos (list_id, title, done) SELECT (SELECT id FROM lists WHERE name = ?), ? || '-' || i, false FROM n`
	if _, err := db.ExecContext(ctx, q, n-1, list, prefix); err != nil {
		t.Fatal(err)
	}
}

func relExec(t *testing.T, db bun.IDB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// relKill kills a child with SIGKILL and reports whether the signal ended
// it (false: it had exited normally before).
func relKill(t *testing.T, ch *mpChild) bool {
	t.Helper()
	_ = ch.cmd.Process.Signal(syscall.SIGKILL)
	err := ch.wait(20 * time.Second)
	ws, ok := ch.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return true
	case ok && ws.Exited() && ws.ExitStatus() == 0:
		return false
	}
	t.Fatalf("%s: %v\noutput:\n%s", ch.name, err, ch.log)
	return false
}

// relCopyNode copies a node's SQLite file (and its WAL) for a scratch run.
func relCopyNode(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		raw, err := os.ReadFile(from + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// relSpoolFiles counts the spool files left in dir.
func relSpoolFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "dbsync-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// relKillCase is one way of timing a kill of a client process.
type relKillCase struct {
	name string
	// progress is the child's mpEnvProgress.
	progress string
	// await is the line (prefix) after which the child is killed, and
	// delay how long after it.
	await string
	delay time.Duration
	// mustBefore: the kill lands inside the transaction, so the node must
	// be exactly as before.
	mustBefore bool
}

// relKillCases: at the end of the download (before the transaction),
// blocked inside the apply transaction, right after the first apply
// report (the apply still running), and at random moments of the run
// (calibrated on a complete run of the same operation).
func relKillCases(op string, full time.Duration, random int, rng *rand.Rand) []relKillCase {
	cases := []relKillCase{
		{name: "download", progress: "print", await: mpProgressLine + op + " download"},
		{name: "inside apply (blocked in OnProgress)", progress: "hang:apply:2", await: mpHungLine, mustBefore: true},
		{name: "first apply report", progress: "print", await: mpProgressLine + op + " apply"},
	}
	for range random {
		d := time.Duration(rng.Int64N(int64(full) * 13 / 10))
		cases = append(cases, relKillCase{name: fmt.Sprintf("random %s", d.Round(time.Millisecond)), progress: "print", await: mpStepLine, delay: d})
	}
	return cases
}

// TestKillDuringPull: a client process pulling a large change set is
// killed with SIGKILL at several moments — end of the download, inside the
// apply transaction (blocked in its progress callback), right after the
// first apply report, and at random delays. Each time its SQLite file holds
// exactly the state before the pull or exactly the server's (rows,
// versions, operations, push attempts, capture flag): never a part. A
// restarted process then completes the pull and converges (merge.md A1).
func TestKillDuringPull(t *testing.T) {
	t.Parallel()
	relKillTest(t, "pull")
}

// TestKillDuringRepair: the same for a repair that replaces a node holding
// local changes (discarded with Force) by a large server snapshot.
func TestKillDuringRepair(t *testing.T) {
	t.Parallel()
	relKillTest(t, "repair")
}

func relKillTest(t *testing.T, op string) {
	start := time.Now()
	rows, random := dbtest.Size(4000, 20000, 50000), dbtest.Size(1, 3, 10)
	if dbtest.Race() {
		rows, random = dbtest.Size(1000, 1000, 20000), dbtest.Size(1, 1, 10)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	t.Logf("%s of %d rows (race detector %v), seed %d", op, rows, dbtest.Race(), seed)
	ctx := context.Background()
	srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	type S = mpStep
	node := func(name, path string, progress string) *mpClient {
		env := []string{"TMPDIR=" + spool, mpEnvChunk + "=500"}
		if progress != "" {
			env = append(env, mpEnvProgress+"="+progress)
		}
		return &mpClient{name: name, path: path, url: srv.URL, env: env}
	}
	cpath := filepath.Join(dir, "c.db")
	c := node("c", cpath, "")

	// The node holds the first version; the server moves on by a large
	// insert, updates and deletes, in three versions. They are written
	// to the server database directly and sealed into versions (the pull
	// stream is the same as for pushed versions, and it is faster).
	seal := func() {
		if _, err := srv.Srv.Seal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	relBulk(t, srv.DB, "w", "w0", 100)
	seal()
	c.run(t, S{Op: "sync"})
	serverChanges := func(round int) {
		relBulk(t, srv.DB, "w", fmt.Sprintf("big%d", round), rows)
		seal()
		relExec(t, srv.DB, "UPDATE todos SET done = NOT done WHERE id % 7 = ?", round%7)
		seal()
		relExec(t, srv.DB, "DELETE FROM todos WHERE id % 41 = ?", round%41)
		seal()
	}
	// Local changes are written to the node's file while no process runs
	// (its capture triggers log them).
	localChanges := func(round int) {
		db, err := dbtest.OpenSQLite(cpath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		relBulk(t, db, fmt.Sprintf("c-local%d", round), fmt.Sprintf("c%d", round), 20)
		relExec(t, db, "UPDATE todos SET title = title || '*' WHERE id % 97 = ?", round%97)
		relExec(t, db, "DELETE FROM todos WHERE id % 89 = ?", round%89)
	}
	expect := relAfterPull
	steps := []mpStep{{Op: "pull"}}
	if op == "repair" {
		expect = relAfterRepair
		steps = []mpStep{{Op: "repair", Force: true}}
	}
	round := 0
	// advance makes the next run change the node again: new server
	// versions for a pull, new local changes for a repair.
	advance := func() {
		round++
		if op == "pull" {
			serverChanges(round)
		} else {
			localChanges(round)
		}
	}
	serverChanges(0)
	if op == "repair" {
		localChanges(0)
	}
	before, after := relReadNode(t, cpath), expect(t, srv)
	if same, _ := relEqual(before, after); same {
		t.Fatal("the node already holds the server's state")
	}

	// Calibration: a complete run on a copy of the node.
	relCopyNode(t, cpath, filepath.Join(dir, "calib.db"))
	calib := node("calib", filepath.Join(dir, "calib.db"), "print")
	ch := calib.start(t, steps...)
	ch.line(t, mpStepLine, 30*time.Second)
	t0 := time.Now()
	ch.result(t)
	full := time.Since(t0)
	if same, d := relEqual(relReadNode(t, calib.path), after); !same {
		t.Fatalf("a complete %s does not reach the server's state:\n%s", op, d)
	}
	t.Logf("a complete %s takes %s", op, full.Round(time.Millisecond))

	outcomes := map[string]int{}
	for i, kc := range relKillCases(op, full, random, rng) {
		ch := node("c", cpath, kc.progress).start(t, steps...)
		ch.line(t, kc.await, 60*time.Second)
		if kc.delay > 0 {
			time.Sleep(kc.delay)
		}
		killed := relKill(t, ch)
		got := relReadNode(t, cpath)
		outcome := ""
		if same, _ := relEqual(got, before); same {
			outcome = "before"
		} else if same, _ := relEqual(got, after); same {
			outcome = "after"
		} else {
			_, d1 := relEqual(got, before)
			_, d2 := relEqual(got, after)
			t.Fatalf("kill %d (%s): the node holds a partial %s\nstate:\n%s\ndiffers from the state before:\n%s\nand from the server's:\n%s\noutput:\n%s",
				i, kc.name, op, got, d1, d2, ch.log)
		}
		if kc.mustBefore && outcome != "before" {
			t.Fatalf("kill %d (%s): killed inside the transaction, the node holds the state after", i, kc.name)
		}
		t.Logf("kill %d at %-32s killed=%-5v → %s", i, kc.name, killed, outcome)
		outcomes[outcome]++
		if outcome == "after" {
			advance()
			before, after = relReadNode(t, cpath), expect(t, srv)
		}
	}

	// A restarted process completes the operation, then syncs.
	node("c", cpath, "print").run(t, steps...)
	if same, d := relEqual(relReadNode(t, cpath), after); !same {
		t.Fatalf("the restarted %s did not reach the server's state:\n%s", op, d)
	}
	res := c.run(t, S{Op: "sync"})
	if s := res.Steps[0].Sync; len(s.Pushes) != 0 && !s.Pushes[0].Empty {
		t.Fatalf("the node pushed after its %s: %+v", op, s.Pushes[0])
	}
	if d := synctest.Diff(relReadNode(t, cpath).Dump, synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
		t.Fatalf("the node and the server differ:\n%s", d)
	}
	// The spool files have no name (spool.Create): killed processes leave
	// none behind.
	if n := relSpoolFiles(t, spool); n != 0 {
		t.Fatalf("%d spool files left behind by killed processes", n)
	}
	t.Logf("%s: outcomes %v; %s", op, outcomes, time.Since(start).Round(time.Millisecond))
}

// relPushTransport sends a client's requests to the current server process
// (which moves to a new port at each restart), records the push ids sent,
// and signals when a push body has been handed to the connection.
type relPushTransport struct {
	host  atomic.Pointer[string]
	inner http.RoundTripper
	mu    sync.Mutex
	ids   []string
	sent  chan int // receives the number of the push (1, 2, …) once its body is sent
}

func (tr *relPushTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Host = *tr.host.Load()
	r2.Host = r2.URL.Host
	if strings.HasSuffix(r.URL.Path, "/push") && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		var head struct {
			PushID string `json:"push_id"`
		}
		_ = json.Unmarshal(body, &head)
		tr.mu.Lock()
		tr.ids = append(tr.ids, head.PushID)
		n := len(tr.ids)
		tr.mu.Unlock()
		r2.Body = &mpNotifyEOF{r: io.NopCloser(bytes.NewReader(body)), fn: func() {
			select {
			case tr.sent <- n:
			default:
			}
		}}
		r2.ContentLength = int64(len(body))
	}
	return tr.inner.RoundTrip(r2)
}

func (tr *relPushTransport) pushIDs() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.ids)
}

// relHookTime returns the time of a server's hook line (zero without one).
func relHookTime(out, prefix string) time.Time {
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f := strings.Fields(rest)
			if us, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
				return time.UnixMicro(us)
			}
		}
	}
	return time.Time{}
}

// relServerState is the part of a server database a push changes.
type relServerState struct {
	versions []string // version ids
	todos    int
	ops      int // operations of versions after base
	pending  int // operations without a version
	push     []string
}

func relReadServer(t *testing.T, spec string, base int64, pushID string) *relServerState {
	t.Helper()
	db := mpOpenDB(t, spec)
	defer db.Close()
	ctx := context.Background()
	// Under the version lock, in one transaction: a PostgreSQL backend
	// may still be committing what the killed process sent COMMIT for
	// (or aborting it), and reads made before and after it lands would
	// see half a version. The lock waits for that transaction to end.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := dialect.LockVersions(ctx, tx); err != nil {
		t.Fatal(err)
	}
	s := &relServerState{
		versions: relStrings(t, tx, "SELECT version_id FROM sync_versions ORDER BY version_id"),
		push:     relStrings(t, tx, "SELECT node_id, version_id FROM sync_pushes WHERE push_id = ?", pushID),
	}
	for q, dst := range map[string]*int{
		"SELECT COUNT(*) FROM todos": &s.todos,
		"SELECT COUNT(*) FROM sync_operations WHERE version_id > " + fmt.Sprint(base): &s.ops,
		"SELECT COUNT(*) FROM sync_operations WHERE version_id IS NULL":               &s.pending,
	} {
		if err := tx.QueryRowContext(ctx, q).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestServerKilledMidPush: a server process (SQLite file, PostgreSQL)
// receives a large push and is killed with SIGKILL while it applies it:
// blocked in AfterPush with every row written and the transaction open
// (deterministic), as soon as BeforePush announces the rows are being
// written (the write of the rows under way), and at random delays after
// the request body was sent. The restarted server's database holds the
// whole version or nothing of it — rows, operations, the push id and the
// version row agree — and the client's next Sync resends the attempt
// under the same push id and converges without duplicates.
func TestServerKilledMidPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			relServerKilled(t, kind)
		})
	}
}

func relServerKilled(t *testing.T, kind string) {
	start := time.Now()
	ctx := context.Background()
	rows := dbtest.Size(5000, 30000, 60000)
	if dbtest.Race() {
		// Enough for the kills at random delays to land during the
		// write now and then; the deterministic kills do not need more.
		rows = dbtest.Size(1000, 1500, 30000)
	}
	random := dbtest.Size(1, 2, 8)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	dir := t.TempDir()
	spec := "sqlite:" + filepath.Join(dir, "server.db")
	if kind == dbtest.KindPostgres {
		spec = "postgres:" + dbtest.PostgresSchemaURL(t)
	}
	t.Logf("%s server, pushes of %d rows (race detector %v), seed %d", kind, rows, dbtest.Race(), seed)

	var srv *mpServer
	hook := ""
	trans := &relPushTransport{inner: &http.Transport{DisableKeepAlives: true}, sent: make(chan int, 1)}
	// server makes sure a server process with the hook runs.
	server := func(h string) {
		if srv != nil && hook == h {
			return
		}
		if srv != nil {
			srv.stop(t)
		}
		srv, hook = mpStartServer(t, spec, mpEnvPushHook+"="+h), h
		host := strings.TrimPrefix(strings.TrimSuffix(srv.url, "/sync"), "http://")
		trans.host.Store(&host)
	}
	kill := func() {
		_ = srv.cmd.Process.Signal(syscall.SIGKILL)
		<-srv.copied
		_ = srv.cmd.Wait()
		if ws, ok := srv.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("server: %v, want killed\noutput:\n%s", srv.cmd.ProcessState, srv.log)
		}
		srv = nil
	}
	server("print")

	// One request per push, whatever its size: this test cuts that request's
	// body (chunked pushes resume instead: TestChunkedPushResume).
	c := synctest.NewClient(t, nil, "c", &client.Config{URL: "http://server/sync", HTTPClient: &http.Client{Transport: trans},
		PushChunkOperations: math.MaxInt32, PushChunkBytes: math.MaxInt32})
	cdb, creg := c.DB, c.Reg
	relBulk(t, cdb, "c", "c0", 10)
	if _, err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	serverTodos := 10 // committed on the server
	batch := 0
	wantOps := 0
	newBatch := func() {
		batch++
		relBulk(t, cdb, "c", fmt.Sprintf("big%d", batch), rows)
		relExec(t, cdb, "UPDATE todos SET done = NOT done WHERE title LIKE 'c0-%'")
		wantOps = rows + 10 // inserts and updates: one operation per row
	}

	type killCase struct {
		name string
		hook string
		// after the body was sent: wait for this server output, then
		// delay.
		await string
		delay time.Duration
	}
	cases := []killCase{
		{name: "blocked in AfterPush", hook: "hang", await: mpHungLine},
		{name: "at BeforePush", hook: "print", await: mpApplyingLine},
	}
	var applyTime time.Duration
	outcomes := map[string]int{}
	caughtMid := 0
	pending := "" // the push id of the node's unsettled attempt
	for i := 0; i < len(cases); i++ {
		kc := cases[i]
		server(kc.hook)
		if pending == "" {
			newBatch()
		}
		base := int64(0)
		if v := relStrings(t, cdb, "SELECT MAX(version_id) FROM sync_versions"); len(v) == 1 {
			base, _ = strconv.ParseInt(v[0], 10, 64)
		}
		mark := len(srv.log.String())
		select {
		case <-trans.sent: // of an earlier push
		default:
		}
		wantSent := len(trans.pushIDs()) + 1
		pushed := make(chan *client.PushResult, 1)
		var perr error
		go func() {
			var res *client.PushResult
			res, perr = c.Push(ctx)
			pushed <- res
		}()
		select {
		case n := <-trans.sent:
			if n != wantSent {
				t.Fatalf("push %d sent, want %d", n, wantSent)
			}
		case <-pushed:
			t.Fatalf("push ended before its body was sent: %v", perr)
		case <-time.After(60 * time.Second):
			t.Fatal("the push body was not sent")
		}
		sentAt := time.Now()
		if kc.await != "" {
			srv.waitLog(t, mark, kc.await, 60*time.Second)
		}
		if kc.delay > 0 {
			time.Sleep(kc.delay)
		}
		killAt := time.Now()
		out := srv.log
		kill()
		if kc.hook == "hang" {
			applyTime = killAt.Sub(sentAt)
		}
		applying, applied := relHookTime(out.String()[mark:], mpApplyingLine), relHookTime(out.String()[mark:], mpAppliedLine)
		stage := "before the rows were written"
		switch {
		case !applied.IsZero() && applied.Before(killAt):
			stage = fmt.Sprintf("after the rows were written (in %s; commit under way or done)", applied.Sub(applying).Round(time.Millisecond))
		case !applying.IsZero() && applying.Before(killAt):
			stage = fmt.Sprintf("while the rows were being written (%s after they started)", killAt.Sub(applying).Round(time.Millisecond))
			caughtMid++
		}

		// The push fails with a network error and its attempt stays, or
		// (a late kill) it was answered and settled. A resent attempt
		// keeps its push id.
		pres := <-pushed
		ids := trans.pushIDs()
		pushID := ids[len(ids)-1]
		if pending != "" && pushID != pending {
			t.Fatalf("kill %d: the node sent push %s, its unsettled attempt is %s", i, pushID, pending)
		}
		attempts := relStrings(t, cdb, "SELECT push_id FROM sync_push_attempts")
		switch {
		case perr == nil && len(attempts) == 0 && pres.VersionID == base+1 && pres.Operations == wantOps:
		case errors.Is(perr, dbsync.ErrNetwork) && slices.Equal(attempts, []string{pushID}):
		default:
			t.Fatalf("push to a killed server: %+v, %v, attempts %v, sent %v", pres, perr, attempts, pushID)
		}

		// The database holds all of the version or nothing of it.
		st := relReadServer(t, spec, base, pushID)
		want := make([]string, 0, base+1)
		for v := int64(1); v <= base; v++ {
			want = append(want, fmt.Sprint(v))
		}
		outcome := ""
		switch {
		case slices.Equal(st.versions, want):
			outcome = "nothing"
			if st.todos != serverTodos || st.ops != 0 || len(st.push) != 0 || st.pending != 0 {
				t.Fatalf("kill %d (%s): no version %d, yet %d todos (want %d), %d operations after version %d, push row %v, %d pending operations",
					i, kc.name, base+1, st.todos, serverTodos, st.ops, base, st.push, st.pending)
			}
		case slices.Equal(st.versions, append(want, fmt.Sprint(base+1))):
			outcome = "whole"
			if st.todos != serverTodos+rows || st.ops != wantOps || len(st.push) != 1 || !strings.HasSuffix(st.push[0], fmt.Sprintf("/%d", base+1)) || st.pending != 0 {
				t.Fatalf("kill %d (%s): version %d with %d todos (want %d), %d operations (want %d), push row %v, %d pending operations",
					i, kc.name, base+1, st.todos, serverTodos+rows, st.ops, wantOps, st.push, st.pending)
			}
		default:
			t.Fatalf("kill %d (%s): server versions %v, want 1..%d or 1..%d", i, kc.name, relShort(st.versions), base, base+1)
		}
		if kc.hook == "hang" && outcome != "nothing" {
			t.Fatalf("kill %d (%s): the transaction was open, yet the version is there", i, kc.name)
		}
		if perr == nil && outcome != "whole" {
			t.Fatalf("kill %d (%s): the push was answered, yet the version is not there", i, kc.name)
		}
		outcomes[outcome]++
		t.Logf("kill %d %-22s %s → %s (push: %v)", i, kc.name, stage, outcome, perr)

		if outcome == "whole" {
			// Settle it now: a resend is a duplicate (an answered push
			// sends nothing).
			server("print")
			n0 := len(ids)
			res, err := c.Sync(ctx)
			if err != nil {
				t.Fatalf("sync after the restart: %v", err)
			}
			ids = trans.pushIDs()
			switch {
			case perr == nil && len(ids) != n0:
				t.Fatalf("sync after an answered push sent pushes %v", ids[n0:])
			case perr != nil && (len(ids) == n0 || ids[n0] != pushID || len(res.Pushes) == 0 || !res.Pushes[0].Duplicate || res.Pushes[0].VersionID != base+1):
				t.Fatalf("sync after the restart sent %v (result %+v), want the attempt %s resent as a duplicate of version %d", ids[n0:], res, pushID, base+1)
			}
			serverTodos += rows
			pending = ""
		} else {
			pending = pushID
		}
		if kc.hook == "print" && kc.await == mpApplyingLine && !strings.HasPrefix(stage, "while") && i < 6 {
			// Too late (the test process was not scheduled in time):
			// again.
			cases = slices.Insert(cases, i+1, kc)
		}
		if i == 1 {
			// Random delays after the body was sent, up to a little more
			// than the time the server took to reach AfterPush.
			for range random {
				d := time.Duration(rng.Int64N(int64(applyTime) * 12 / 10))
				cases = append(cases, killCase{name: fmt.Sprintf("%s after sending", d.Round(time.Millisecond)), hook: "print", delay: d})
			}
		}
	}
	if caughtMid == 0 {
		t.Fatalf("no kill landed while the rows were being written, even right after BeforePush (outcomes %v)", outcomes)
	}

	// The restarted server gets the last attempt again, under its id.
	server("print")
	n0 := len(trans.pushIDs())
	res, err := c.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids := trans.pushIDs(); pending != "" {
		if len(ids) == n0 || ids[n0] != pending || len(res.Pushes) == 0 || res.Pushes[0].Duplicate || res.Pushes[0].Operations != wantOps {
			t.Fatalf("the last sync sent %v (result %+v), want the attempt %s applied now", ids[n0:], res, pending)
		}
		serverTodos += rows
	}
	srv.stop(t)

	// No duplicates: every title once, the node and the server equal.
	sdb := mpOpenDB(t, spec)
	sreg, err := dbsync.Track(sdb, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	ds := synctest.Dump(t, sdb, sreg)
	if d := synctest.Diff(synctest.Dump(t, cdb, creg), ds); d != "" {
		t.Fatalf("the node and the server differ:\n%s", d[:min(len(d), 2000)])
	}
	if dup := relStrings(t, sdb, "SELECT title FROM todos GROUP BY title HAVING COUNT(*) > 1"); len(dup) > 0 || len(ds["todos"]) != serverTodos {
		t.Fatalf("server: %d todos (want %d), duplicated titles %v", len(ds["todos"]), serverTodos, relShort(dup))
	}
	relCheckVersions(t, sdb, cdb)
	t.Logf("%s: time to reach AfterPush %s; %d kills while the rows were being written; outcomes %v; %s",
		kind, applyTime.Round(time.Millisecond), caughtMid, outcomes, time.Since(start).Round(time.Millisecond))
}

// relProxy is a TCP proxy that can cut the next connection after a
// number of bytes in one direction, with a reset.
type relProxy struct {
	url    string
	target string
	mu     sync.Mutex
	dir    string // "up" (request), "down" (response), or "" for no cut
	limit  int64
	cuts   atomic.Int64
}

func relNewProxy(t *testing.T, target string) *relProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &relProxy{url: "http://" + ln.Addr().String(), target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

// cut arms a cut of the next connection after limit bytes in direction
// dir.
func (p *relProxy) cut(dir string, limit int64) {
	p.mu.Lock()
	p.dir, p.limit = dir, limit
	p.mu.Unlock()
}

func (p *relProxy) handle(cc net.Conn) {
	sc, err := net.Dial("tcp", p.target)
	if err != nil {
		cc.Close()
		return
	}
	p.mu.Lock()
	dir, limit := p.dir, p.limit
	p.dir = ""
	p.mu.Unlock()
	var once sync.Once
	closeBoth := func(reset bool) {
		once.Do(func() {
			if reset {
				p.cuts.Add(1)
				for _, c := range []net.Conn{cc, sc} {
					if tc, ok := c.(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
				}
			}
			cc.Close()
			sc.Close()
		})
	}
	pipe := func(dst, src net.Conn, cut bool) {
		if cut {
			_, _ = io.CopyN(dst, src, limit)
			closeBoth(true)
			return
		}
		_, _ = io.Copy(dst, src)
		closeBoth(false)
	}
	go pipe(sc, cc, dir == "up")
	go pipe(cc, sc, dir == "down")
}

// TestNetworkCut: real TCP connections reset mid-stream by a proxy, in
// each direction: a push whose request body is cut (nothing applied; the
// resend applies it once), a push whose answer is cut (applied; the
// resend is a duplicate), and pulls and repairs whose response is cut (a
// clean ErrNetwork, the node unchanged; the retry works). The client
// tests cut streams inside the client's transport; this cuts the socket.
func TestNetworkCut(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rows := dbtest.Size(1000, 3000, 20000)
			if dbtest.Race() {
				// Several chunks of 200 and bodies well over the cut
				// points (16 KiB up, 8 KiB down).
				rows = dbtest.Size(500, 1000, 20000)
			}
			srv := synctest.NewServer(t, kind, &server.Config{ChunkSize: 200})
			proxy := relNewProxy(t, srv.HTTP.Listener.Addr().String())
			hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			a := synctest.NewClient(t, srv, "a", &client.Config{URL: proxy.url + "/sync", HTTPClient: hc})
			b := synctest.NewClient(t, srv, "b", &client.Config{URL: proxy.url + "/sync", HTTPClient: hc})
			count := func(q string) int {
				var n int
				if err := srv.DB.QueryRowContext(ctx, q).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			wantNetwork := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("%s: %v, want ErrNetwork", what, err)
				}
			}

			// The request body of a push is cut: nothing applied, the
			// attempt stays, the resend applies it once.
			relBulk(t, a.DB, "a", "a", rows)
			proxy.cut("up", 16<<10)
			_, err := a.Push(ctx)
			wantNetwork("push with its body cut", err)
			if n := count("SELECT COUNT(*) FROM todos"); n != 0 || count("SELECT COUNT(*) FROM sync_versions") != 0 {
				t.Fatalf("the server applied a push whose body was cut (%d todos)", n)
			}
			if n := len(relStrings(t, a.DB, "SELECT push_id FROM sync_push_attempts")); n != 1 {
				t.Fatalf("the node holds %d push attempts, want 1", n)
			}
			res, err := a.Push(ctx)
			if err != nil || res.Duplicate || res.VersionID != 1 || res.Operations != rows+1 {
				t.Fatalf("resent push: %+v, %v", res, err)
			}

			// The answer of a push is cut: applied, the resend is a
			// duplicate.
			relExec(t, a.DB, "UPDATE todos SET done = true WHERE id % 3 = 0")
			proxy.cut("down", 40)
			_, err = a.Push(ctx)
			wantNetwork("push with its answer cut", err)
			if n := count("SELECT COUNT(*) FROM sync_versions"); n != 2 {
				t.Fatalf("server has %d versions after the push whose answer was cut, want 2", n)
			}
			res, err = a.Push(ctx)
			if err != nil || !res.Duplicate || res.VersionID != 2 {
				t.Fatalf("resent push: %+v, %v", res, err)
			}

			// A pull's response is cut: b is unchanged; the retry works.
			relExec(t, b.DB, "INSERT INTO lists (name) VALUES ('b')")
			before := relNodeOf(t, b.DB)
			proxy.cut("down", 8<<10)
			_, err = b.Pull(ctx)
			wantNetwork("pull cut", err)
			if same, d := relEqual(relNodeOf(t, b.DB), before); !same {
				t.Fatalf("a cut pull changed the node:\n%s", d)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("sync after a cut pull: %v", err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}

			// A repair's response is cut: b is unchanged; the retry works.
			relExec(t, b.DB, "UPDATE todos SET title = title || '*' WHERE id % 5 = 0")
			before = relNodeOf(t, b.DB)
			proxy.cut("down", 8<<10)
			_, err = b.Repair(ctx, &client.RepairOptions{Force: true})
			wantNetwork("repair cut", err)
			if same, d := relEqual(relNodeOf(t, b.DB), before); !same {
				t.Fatalf("a cut repair changed the node:\n%s", d)
			}
			if _, err := b.Repair(ctx, &client.RepairOptions{Force: true}); err != nil {
				t.Fatalf("repair after a cut one: %v", err)
			}

			ds := synctest.Dump(t, srv.DB, srv.Reg)
			for _, c := range []*synctest.Client{a, b} {
				if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), ds); d != "" {
					t.Fatalf("%s and the server differ:\n%s", c.Name, d[:min(len(d), 2000)])
				}
			}
			if n := len(ds["todos"]); n != rows || proxy.cuts.Load() != 4 {
				t.Fatalf("server holds %d todos (want %d); %d cuts (want 4)", n, rows, proxy.cuts.Load())
			}
		})
	}
}

// relPG is a private PostgreSQL cluster.
type relPG struct {
	bin, data, sock, log string
	port                 int
}

// relRequire skips the test, or fails it under CI=true.
func relRequire(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: failing instead of skipping)")
	}
	t.Skip(msg + ": THIS TEST IS SKIPPED")
}

func relStartPG(t *testing.T) *relPG {
	t.Helper()
	if os.Geteuid() != 0 {
		relRequire(t, "a private PostgreSQL cluster needs root (to run it as the postgres user)")
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		relRequire(t, "no /usr/lib/postgresql/*/bin/initdb")
	}
	sort.Strings(bins)
	pg := &relPG{bin: filepath.Dir(bins[len(bins)-1])}
	u, err := user.Lookup("postgres")
	if err != nil {
		relRequire(t, "no postgres OS user: %v", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		relRequire(t, "no runuser: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	// The postgres user must reach the directory t.TempDir made.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	pg.data, pg.sock, pg.log = filepath.Join(dir, "data"), filepath.Join(dir, "sock"), filepath.Join(dir, "log")
	if err := os.Mkdir(pg.sock, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pg.sock, uid, gid); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pg.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pg.run(t, "initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	if err := pg.ctl("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-m", "immediate", "-w", "stop").CombinedOutput()
		if err != nil {
			t.Logf("stop the private PostgreSQL: %v\n%s", err, out)
		}
	})
	return pg
}

func (pg *relPG) run(t *testing.T, prog string, args ...string) {
	t.Helper()
	if err := pg.runErr(prog, args...); err != nil {
		t.Fatal(err)
	}
}

func (pg *relPG) runErr(prog string, args ...string) error {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, prog)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		logs, _ := os.ReadFile(pg.log)
		return fmt.Errorf("%s %v: %v\n%s\nserver log:\n%s", prog, args, err, out, logs)
	}
	return nil
}

// ctl runs pg_ctl start or restart (fast shutdown), waiting for the end.
func (pg *relPG) ctl(action string) error {
	return pg.runErr("pg_ctl", "-D", pg.data, "-l", pg.log, "-w", "-t", "60", "-m", "fast",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.sock), action)
}

func (pg *relPG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// relAllowedOutage reports whether err is what a client may see while its
// server's database is down: no answer, or a 5xx / busy / internal error
// (also as the error line of a stream).
func relAllowedOutage(err error) bool {
	var se *dbsync.ServerError
	return errors.Is(err, dbsync.ErrNetwork) || errors.Is(err, dbsync.ErrBusy) || errors.Is(err, dbsync.ErrInternal) ||
		(errors.As(err, &se) && se.Status >= 500)
}

// TestPostgresRestartUnderLoad: a private PostgreSQL cluster is restarted
// (pg_ctl restart -m fast) while 8 clients (6 under the race detector)
// sync random changes in a loop through a server on it. During the
// outage the clients see only network,
// busy or internal errors; they recover by themselves, and at the end every
// client holds exactly the server's rows, and each client's own rows are
// exactly what it wrote (none lost, none twice).
func TestPostgresRestartUnderLoad(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pg := relStartPG(t)
	t.Logf("private PostgreSQL (%s) on port %d, started in %s", pg.bin, pg.port, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	db, err := dbtest.OpenPostgres(pg.url())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { _ = db.Close() })
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	srv, h := synctest.NewHandler(t, db, testmodels.All(), nil)
	hs := newLoopbackServer(t, h)

	nclients := dbtest.Size(4, 8, 16)
	before, after := dbtest.Size(2, 3, 10), dbtest.Size(2, 3, 10) // successful syncs per client before the restart and after it
	if dbtest.Race() && !dbtest.Long() {
		nclients, before, after = 6, 2, 2
	}
	type node struct {
		c     *client.Client
		db    *bun.DB
		model map[string]bool // own todos: title → done
		seq   int
	}
	var nodes []*node
	for i := range nclients {
		c := synctest.NewClient(t, nil, fmt.Sprintf("r%d", i), &client.Config{URL: hs + "/sync", MaxSyncRounds: 20})
		relExec(t, c.DB, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("r%d", i))
		nodes = append(nodes, &node{c: c.Client, db: c.DB, model: map[string]bool{}})
	}
	// change makes random changes to the node's own rows.
	change := func(i int, n *node, rng *rand.Rand) error {
		for range 1 + rng.IntN(4) {
			titles := make([]string, 0, len(n.model))
			for k := range n.model {
				titles = append(titles, k)
			}
			sort.Strings(titles)
			switch k := rng.IntN(10); {
			case k < 5 || len(titles) == 0:
				n.seq++
				title := fmt.Sprintf("r%d-%d", i, n.seq)
				if _, err := n.db.ExecContext(ctx, "INSERT INTO todos (list_id, title) SELECT id, ? FROM lists WHERE name = ?", title, fmt.Sprintf("r%d", i)); err != nil {
					return err
				}
				n.model[title] = false
			case k < 8:
				title := titles[rng.IntN(len(titles))]
				if _, err := n.db.ExecContext(ctx, "UPDATE todos SET done = NOT done WHERE title = ?", title); err != nil {
					return err
				}
				n.model[title] = !n.model[title]
			default:
				title := titles[rng.IntN(len(titles))]
				if _, err := n.db.ExecContext(ctx, "DELETE FROM todos WHERE title = ?", title); err != nil {
					return err
				}
				delete(n.model, title)
			}
		}
		return nil
	}
	var (
		restarting, restarted atomic.Bool
		ok                    atomic.Int64 // successful syncs before the restart
		outageErrs, otherErrs atomic.Int64
		duplicates            atomic.Int64 // resent pushes the server had applied
		lastOutage            atomic.Int64 // Unix µs of the last outage error
		errMu                 sync.Mutex
		errKinds              = map[string]int{}
		firstOther            error
	)
	restartDone := make(chan struct{})
	var restartTook time.Duration
	var restartErr error
	var restartEnd atomic.Int64
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			good, goodAfter := 0, 0
			for tries := 0; tries < 2000 && (good < before || goodAfter < after); tries++ {
				if err := change(i, n, rng); err != nil {
					t.Errorf("client %d: change: %v", i, err)
					return
				}
				res, err := n.c.Sync(ctx)
				switch {
				case err == nil:
					for _, p := range res.Pushes {
						if p.Duplicate {
							duplicates.Add(1)
						}
					}
					good++
					if restarted.Load() {
						goodAfter++
					} else if ok.Add(1) == int64(nclients*before) {
						// Enough traffic: restart PostgreSQL under it.
						restarting.Store(true)
						go func() {
							t0 := time.Now()
							restartErr = pg.ctl("restart")
							restartTook = time.Since(t0)
							restartEnd.Store(time.Now().UnixMicro())
							restarted.Store(true)
							close(restartDone)
						}()
					}
				case errors.Is(err, dbsync.ErrPullNeeded) || relAllowedOutage(err) && restarting.Load():
					outageErrs.Add(1)
					if !errors.Is(err, dbsync.ErrPullNeeded) {
						lastOutage.Store(time.Now().UnixMicro())
					}
					errMu.Lock()
					switch {
					case errors.Is(err, dbsync.ErrNetwork):
						errKinds["network"]++
					case errors.Is(err, dbsync.ErrPullNeeded):
						errKinds["pull_needed"]++
					default:
						errKinds["internal"]++
					}
					errMu.Unlock()
					time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
				default:
					otherErrs.Add(1)
					errMu.Lock()
					if firstOther == nil {
						firstOther = fmt.Errorf("client %d: %w", i, err)
					}
					errMu.Unlock()
					return
				}
				if !restarting.Load() && good >= before {
					// Keep syncing until the restart starts.
					time.Sleep(5 * time.Millisecond)
				}
			}
			if good < before || goodAfter < after {
				t.Errorf("client %d: %d syncs before the restart, %d after it", i, good, goodAfter)
			}
		}()
	}
	wg.Wait()
	if firstOther != nil {
		t.Fatalf("a client failed with an error the outage does not explain: %v", firstOther)
	}
	select {
	case <-restartDone:
	default:
		t.Fatal("the restart never happened")
	}
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	if errKinds["network"]+errKinds["internal"] == 0 {
		t.Fatalf("no client saw the outage (errors %v)", errKinds)
	}

	// Sync until quiet, then compare.
	relQuiet(t, func() int64 {
		var v int64
		if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM sync_versions").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}, len(nodes), func(i int) (*client.SyncResult, error) { return nodes[i].c.Sync(ctx) })
	ds := synctest.Dump(t, db, srv.Registry())
	total := 0
	for i, n := range nodes {
		if d := synctest.Diff(synctest.Dump(t, n.db, n.c.Registry()), ds); d != "" {
			t.Fatalf("client %d and the server differ:\n%s", i, d[:min(len(d), 2000)])
		}
		got := relStrings(t, db, "SELECT title, CASE WHEN done THEN 'true' ELSE 'false' END FROM todos WHERE list_id = (SELECT id FROM lists WHERE name = ?) ORDER BY title", fmt.Sprintf("r%d", i))
		var want []string
		for title, done := range n.model {
			want = append(want, fmt.Sprintf("%s/%v", title, done))
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("client %d's rows on the server:\n%v\nwant:\n%v", i, got, want)
		}
		total += len(want)
	}
	if len(ds["todos"]) != total {
		t.Fatalf("server has %d todos, the clients wrote %d", len(ds["todos"]), total)
	}
	ndbs := make([]bun.IDB, len(nodes))
	for i, n := range nodes {
		ndbs[i] = n.db
	}
	relCheckVersions(t, db, ndbs...)
	t.Logf("%d clients, %d syncs before the restart; restart took %s; errors %v, the last one %s after the restart ended; %d duplicate pushes; %d todos; %s",
		nclients, ok.Load(), restartTook.Round(time.Millisecond), errKinds, time.Duration(lastOutage.Load()-restartEnd.Load())*time.Microsecond,
		duplicates.Load(), total, time.Since(start).Round(time.Millisecond))
}

// relQuiet syncs every client in turn until a round creates no version
// and every client holds the server's latest.
func relQuiet(t *testing.T, latest func() int64, n int, syncOne func(i int) (*client.SyncResult, error)) {
	t.Helper()
	for pass := 0; pass < 20; pass++ {
		v0 := latest()
		all := true
		for i := range n {
			var res *client.SyncResult
			var err error
			for try := 0; try < 50; try++ {
				if res, err = syncOne(i); err == nil || !(errors.Is(err, dbsync.ErrPullNeeded) || relAllowedOutage(err)) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("quiet pass %d, client %d: %v", pass, i, err)
			}
			if res.VersionID != v0 {
				all = false
			}
		}
		if all && latest() == v0 {
			return
		}
	}
	t.Fatal("the clients never went quiet")
}

// relCheckVersions checks that the server's versions are 1..N and that
// every node's versions run without a hole up to N.
func relCheckVersions(t *testing.T, server bun.IDB, nodes ...bun.IDB) {
	t.Helper()
	vs := relStrings(t, server, "SELECT version_id FROM sync_versions ORDER BY version_id")
	for i, v := range vs {
		if v != fmt.Sprint(i+1) {
			t.Fatalf("server versions have a hole: %v", relShort(vs))
		}
	}
	for j, n := range nodes {
		got := relStrings(t, n, "SELECT version_id FROM sync_versions ORDER BY version_id")
		if len(got) == 0 {
			t.Fatalf("node %d holds no version", j)
		}
		first, _ := strconv.Atoi(got[0])
		for i, v := range got {
			if v != fmt.Sprint(first+i) {
				t.Fatalf("node %d: a pull saw a gap: versions %v", j, relShort(got))
			}
		}
		if got[len(got)-1] != fmt.Sprint(len(vs)) {
			t.Fatalf("node %d ends at version %s, the server at %d", j, got[len(got)-1], len(vs))
		}
	}
}

// newLoopbackServer serves h on a loopback listener and returns its URL.
func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String()
}
