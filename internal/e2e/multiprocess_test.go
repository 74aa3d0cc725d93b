//go:build unix

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/procmem"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestMultiProcessHelper is the body of the child processes of
// TestMultiProcess: the test binary runs itself with mpEnvRole and the rest
// set. In an ordinary run it does nothing.
func TestMultiProcessHelper(t *testing.T) {
	if os.Getenv(mpEnvRole) == "" {
		t.Skip("child process of TestMultiProcess")
	}
	os.Exit(mpMain())
}

// mpBuffer collects a child's output for failure messages.
type mpBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *mpBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *mpBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mpChild is one process of the test.
type mpChild struct {
	name string
	cmd  *exec.Cmd
	// stdin stays open while the test runs: a child whose standard input
	// ends (the test binary died) exits instead of lingering.
	stdin io.WriteCloser
	out   *bufio.Reader
	log   *mpBuffer
	done  chan struct{}
	err   error // of Wait, once done is closed
}

func mpSpawn(t *testing.T, name string, env ...string) *mpChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMultiProcessHelper$", "-test.count=1")
	// A race-enabled binary sleeps a second at exit (TSan's
	// atexit_sleep_ms) while goroutines remain, as an exiting client's
	// do: a second per process, most of this test's time. Races are
	// reported as they happen and still fail the child's exit status.
	race := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(append(os.Environ(), "GORACE="+race), env...)
	c := &mpChild{name: name, cmd: cmd, log: &mpBuffer{}, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = c.log
	c.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { c.kill() })
	return c
}

// waitLog waits until the child's output from byte from on holds s (for
// the output of a server, which a goroutine drains) and returns that
// output.
func (c *mpChild) waitLog(t *testing.T, from int, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := c.log.String()[from:]
		if strings.Contains(out, s) {
			return out
		}
		if time.Now().After(deadline) {
			c.kill()
			t.Fatalf("%s: no %q after %s\noutput:\n%s", c.name, strings.TrimSpace(s), timeout, out)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// line waits for the child's next line starting with prefix.
func (c *mpChild) line(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	type got struct {
		s   string
		err error
	}
	ch := make(chan got, 1)
	go func() {
		s, err := mpReadLine(c.out, prefix, c.log)
		ch <- got{s, err}
	}()
	select {
	case g := <-ch:
		if g.err != nil {
			c.kill()
			t.Fatalf("%s: %v\noutput:\n%s", c.name, g.err, c.log)
		}
		return g.s
	case <-time.After(timeout):
		c.kill()
		t.Fatalf("%s: no %q line after %s\noutput:\n%s", c.name, strings.TrimSpace(prefix), timeout, c.log)
	}
	return ""
}

// wait drains the child's output and waits for it to exit.
func (c *mpChild) wait(timeout time.Duration) error {
	go func() {
		_, _ = io.Copy(c.log, c.out)
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s did not exit within %s", c.name, timeout)
	}
}

// kill kills the child (nothing happens when it has exited already).
func (c *mpChild) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.stdin.Close()
}

// mpServer is the server process.
type mpServer struct {
	*mpChild
	url    string
	copied chan struct{} // closed when its output is drained
}

func mpStartServer(t *testing.T, spec string, env ...string) *mpServer {
	t.Helper()
	c := mpSpawn(t, "server", append([]string{mpEnvRole + "=server", mpEnvDB + "=" + spec}, env...)...)
	url := c.line(t, mpURLLine, 20*time.Second)
	s := &mpServer{mpChild: c, url: url, copied: make(chan struct{})}
	go func() {
		_, _ = io.Copy(c.log, c.out)
		close(s.copied)
	}()
	return s
}

func (s *mpServer) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		<-s.copied
		done <- s.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exited with %v\noutput:\n%s", err, s.log)
		}
	case <-time.After(10 * time.Second):
		s.kill()
		t.Fatalf("server did not stop\noutput:\n%s", s.log)
	}
}

// mpClient is a client node: a SQLite file that successive processes
// open.
type mpClient struct {
	name string
	path string
	url  string
	// env is added to the environment of its processes (mpEnvProgress,
	// mpEnvChunk, TMPDIR, …).
	env []string
}

func (c *mpClient) start(t *testing.T, steps ...mpStep) *mpChild {
	t.Helper()
	raw, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	return mpSpawn(t, c.name, append([]string{mpEnvRole + "=client", mpEnvDB + "=" + c.path,
		mpEnvURL + "=" + c.url, mpEnvSteps + "=" + string(raw)}, c.env...)...)
}

// result waits for a client process's result; every step must succeed.
func (ch *mpChild) result(t *testing.T) *mpResult {
	t.Helper()
	return ch.resultWithin(t, 30*time.Second)
}

// resultWithin is result, waiting up to timeout.
func (ch *mpChild) resultWithin(t *testing.T, timeout time.Duration) *mpResult {
	t.Helper()
	line := ch.line(t, mpResultLine, timeout)
	if err := ch.wait(10 * time.Second); err != nil {
		t.Fatalf("%s: %v\noutput:\n%s", ch.name, err, ch.log)
	}
	var res mpResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("%s: result %q: %v", ch.name, line, err)
	}
	if res.Err != "" {
		t.Fatalf("%s: %s\noutput:\n%s", ch.name, res.Err, ch.log)
	}
	for i, s := range res.Steps {
		if s.Err != "" {
			t.Fatalf("%s: step %d (%s): %s\noutput:\n%s", ch.name, i, s.Op, s.Err, ch.log)
		}
	}
	return &res
}

func (c *mpClient) run(t *testing.T, steps ...mpStep) *mpResult {
	t.Helper()
	return c.start(t, steps...).result(t)
}

// hang runs a push that blocks (after the server's answer, or once it is
// sent), then kills the process with SIGKILL.
func (c *mpClient) hang(t *testing.T, after string, steps ...mpStep) {
	t.Helper()
	ch := c.start(t, append(steps, mpStep{Op: "hang", After: after})...)
	ch.line(t, mpHungLine, 30*time.Second)
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := ch.wait(10 * time.Second)
	if ws, ok := ch.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: exit %v, want killed by SIGKILL\noutput:\n%s", c.name, err, ch.log)
	}
}

func mpOpenDB(t *testing.T, spec string) *bun.DB {
	t.Helper()
	var db *bun.DB
	var err error
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		db, err = dbtest.OpenSQLite(path)
	} else {
		db, err = dbtest.OpenPostgres(strings.TrimPrefix(spec, "postgres:"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestMultiProcess is the acceptance test of offline sync across
// processes: one server process (SQLite file, or PostgreSQL) and two client
// processes on their own SQLite files, over HTTP on loopback. Client
// processes are short-lived: each opens its file, registers if needed, runs
// a script and exits (or is killed), as an application would.
func TestMultiProcess(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			dir := t.TempDir()
			spec := "sqlite:" + filepath.Join(dir, "server.db")
			if kind == dbtest.KindPostgres {
				spec = "postgres:" + dbtest.PostgresSchemaURL(t)
			}
			srv := mpStartServer(t, spec)
			a := &mpClient{name: "a", path: filepath.Join(dir, "a.db"), url: srv.url}
			b := &mpClient{name: "b", path: filepath.Join(dir, "b.db"), url: srv.url}
			type S = mpStep

			// A registers, creates data and pushes it.
			ra := a.run(t, S{Op: "insert", List: "a", Prefix: "a0", N: 10}, S{Op: "sync"})
			if !ra.Registered || ra.NodeID == 0 {
				t.Fatalf("a did not register: %+v", ra)
			}
			if p := ra.Steps[1].Sync.Pushes; len(p) != 1 || p[0].Operations != 11 {
				t.Fatalf("a's first sync: %+v", ra.Steps[1].Sync)
			}
			// B registers, queries the server, pulls.
			rb := b.run(t, S{Op: "query", Table: "todos"}, S{Op: "query", Table: "lists", Equal: map[string]string{"name": "a"}}, S{Op: "pull"})
			if !rb.Registered || rb.NodeID == ra.NodeID {
				t.Fatalf("b registration: %+v (a is %d)", rb, ra.NodeID)
			}
			if rb.Steps[0].Rows != 10 || rb.Steps[1].Rows != 1 {
				t.Fatalf("b's queries: %+v", rb.Steps)
			}
			if p := rb.Steps[2].Pull; p.Operations != 11 || p.VersionID != 1 {
				t.Fatalf("b's pull: %+v", p)
			}

			// Both edit offline and sync at the same time.
			ca := a.start(t, S{Op: "insert", List: "a", Prefix: "a1", N: 30},
				S{Op: "exec", SQL: "UPDATE todos SET done = true WHERE title IN ('a0-5', 'a0-6', 'a0-7')"}, S{Op: "sync"})
			cb := b.start(t, S{Op: "insert", List: "b", Prefix: "b1", N: 30},
				S{Op: "exec", SQL: "DELETE FROM todos WHERE title IN ('a0-1', 'a0-2')"}, S{Op: "sync"})
			ra2, rb2 := ca.result(t), cb.result(t)
			if ra2.Registered || rb2.Registered || ra2.NodeID != ra.NodeID || rb2.NodeID != rb.NodeID {
				t.Fatalf("nodes changed identity: a %+v, b %+v", ra2, rb2)
			}
			a.run(t, S{Op: "sync"})
			b.run(t, S{Op: "sync"})

			// A's push is answered, but A is killed before it reads the
			// answer. Restarted, it syncs: the push is a duplicate.
			a.hang(t, "reply", S{Op: "insert", List: "a", Prefix: "a2", N: 5})
			ra3 := a.run(t, S{Op: "sync"})
			if p := ra3.Steps[0].Sync.Pushes; len(p) == 0 || !p[0].Duplicate || p[0].Operations != 5 {
				t.Fatalf("a's sync after the kill: %+v", ra3.Steps[0].Sync)
			}
			// B is killed as soon as its push is sent (applied or not).
			// Restarted, it pulls (which settles the push) and syncs.
			b.hang(t, "send", S{Op: "insert", List: "b", Prefix: "b2", N: 5})
			rb3 := b.run(t, S{Op: "pull"}, S{Op: "sync"})
			if rb3.Steps[0].Pull.PushApplied == nil {
				t.Fatalf("b's pull did not settle the push: %+v", rb3.Steps[0].Pull)
			}
			t.Logf("b's push sent before the kill was applied: %v", *rb3.Steps[0].Pull.PushApplied)

			// A captured signed push cannot be replayed, nor altered.
			capFile := filepath.Join(dir, "push.json")
			if r := a.run(t, S{Op: "pull"}, S{Op: "insert", List: "a", Prefix: "a3", N: 1}, S{Op: "capture", File: capFile}); r.Steps[2].Push.Operations != 1 {
				t.Fatalf("a's captured push: %+v", r.Steps[2].Push)
			}
			raw, err := os.ReadFile(capFile)
			if err != nil {
				t.Fatal(err)
			}
			var cp mpCaptured
			if err := json.Unmarshal(raw, &cp); err != nil {
				t.Fatal(err)
			}
			// resend sends the captured headers, with another nonce if
			// one is given, and body.
			resend := func(body []byte, nonce string) (int, string) {
				req, err := http.NewRequest(cp.Method, cp.URL, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = cp.Header.Clone()
				if nonce != "" {
					req.Header.Set(protocol.HeaderNonce, nonce)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var eb protocol.ErrorBody
				if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
					t.Fatalf("replay answered %d without an error body: %v", resp.StatusCode, err)
				}
				return resp.StatusCode, eb.Error.Code
			}
			if st, code := resend(cp.Body, ""); st != http.StatusUnauthorized || code != protocol.CodeReplay {
				t.Fatalf("replayed push answered %d %s, want 401 %s", st, code, protocol.CodeReplay)
			}
			altered := bytes.Replace(cp.Body, []byte("a3-0"), []byte("a3-X"), 1)
			if bytes.Equal(altered, cp.Body) {
				t.Fatalf("captured push %s lacks its row", cp.Body)
			}
			// With its nonce, it is refused as a replay before its body
			// is read; with a fresh one, for its signature.
			if st, code := resend(altered, ""); st != http.StatusUnauthorized || code != protocol.CodeReplay {
				t.Fatalf("altered push answered %d %s, want 401 %s", st, code, protocol.CodeReplay)
			}
			if st, code := resend(altered, protocol.NewNonce()); st != http.StatusUnauthorized || code != protocol.CodeUnauthorized {
				t.Fatalf("altered push with a fresh nonce answered %d %s, want 401 %s", st, code, protocol.CodeUnauthorized)
			}

			// B has an unpushed change it gives up: repair.
			rb4 := b.run(t, S{Op: "insert", List: "b", Prefix: "b-local", N: 1}, S{Op: "repair", Force: true})
			if r := rb4.Steps[1].Repair; r.Discarded != 1 || r.Rows == 0 {
				t.Fatalf("b's repair: %+v", r)
			}

			// Everyone catches up; the server stops; compare the files.
			a.run(t, S{Op: "sync"})
			b.run(t, S{Op: "sync"})
			srv.stop(t)

			var want []string
			add := func(prefix string, n int, skip ...int) {
				for i := range n {
					if !slices.Contains(skip, i) {
						want = append(want, fmt.Sprintf("%s-%d", prefix, i))
					}
				}
			}
			add("a0", 10, 1, 2)
			add("a1", 30)
			add("a2", 5)
			add("a3", 1)
			add("b1", 30)
			add("b2", 5)
			slices.Sort(want)
			sdb := mpOpenDB(t, spec)
			reg, err := dbsync.Track(sdb, testmodels.All()...)
			if err != nil {
				t.Fatal(err)
			}
			ds := synctest.Dump(t, sdb, reg)
			var titles []string
			if err := sdb.NewSelect().Model((*testmodels.Todo)(nil)).Column("title").Order("title").Scan(context.Background(), &titles); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(titles, want) {
				t.Fatalf("server todos (%d):\n%v\nwant (%d):\n%v", len(titles), titles, len(want), want)
			}
			var done int
			if err := sdb.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM todos WHERE done").Scan(&done); err != nil {
				t.Fatal(err)
			}
			if done != 3 || len(ds["lists"]) != 2 {
				t.Fatalf("server: %d done todos, lists %v", done, ds["lists"])
			}
			for _, c := range []*mpClient{a, b} {
				cdb := mpOpenDB(t, "sqlite:"+c.path)
				creg, err := dbsync.Track(cdb, testmodels.All()...)
				if err != nil {
					t.Fatal(err)
				}
				if d := synctest.Diff(synctest.Dump(t, cdb, creg), ds); d != "" {
					t.Fatalf("%s and the server differ:\n%s", c.name, d)
				}
				var pending int
				if err := cdb.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM sync_operations WHERE version_id IS NULL").Scan(&pending); err != nil {
					t.Fatal(err)
				}
				if pending != 0 {
					t.Fatalf("%s has %d pending operations", c.name, pending)
				}
			}
			t.Logf("%s: %s", kind, time.Since(start).Round(time.Millisecond))
		})
	}
}

// ---- the child processes ----

// Environment of a test process.
const (
	// mpEnvRole is "server" or "client"; unset in an ordinary test run.
	mpEnvRole = "DBSYNC_TESTNODE_ROLE"
	// mpEnvDB is the database: for a server "sqlite:<path>" or
	// "postgres:<url>", for a client the path of its SQLite file.
	mpEnvDB = "DBSYNC_TESTNODE_DB"
	// mpEnvURL is the server's URL (client).
	mpEnvURL = "DBSYNC_TESTNODE_URL"
	// mpEnvSteps is the client's script, a JSON array of [mpStep].
	mpEnvSteps = "DBSYNC_TESTNODE_STEPS"
	// mpEnvProgress (client) makes the client write a mpProgressLine for
	// each progress report of its pulls and repairs: "print", or
	// "hang:<phase>:<n>" to also write mpHungLine and block (until killed)
	// inside the n-th report of that phase, e.g. in the middle of applying
	// a pull, its transaction open.
	mpEnvProgress = "DBSYNC_TESTNODE_PROGRESS"
	// mpEnvChunk (client) is client.Config.ChunkSize.
	mpEnvChunk = "DBSYNC_TESTNODE_CHUNK"
	// mpEnvPushChunk (client) is client.Config.PushChunkOperations; "off"
	// sends every push in one request.
	mpEnvPushChunk = "DBSYNC_TESTNODE_PUSHCHUNK"
	// mpEnvPushHook (server): "print" writes mpApplyingLine when a push
	// starts writing rows (BeforePush) and mpAppliedLine once they are all
	// written, before commit (AfterPush); "hang" also writes mpHungLine and
	// blocks in AfterPush until the process is killed (the push's
	// transaction open, every row written).
	mpEnvPushHook = "DBSYNC_TESTNODE_PUSHHOOK"
	// mpEnvScopes (server) "todos" serves with scopes: todos through
	// their list (ThroughParent), lists and notes GlobalWritable; every
	// todo a push writes is checked against the scope.
	mpEnvScopes = "DBSYNC_TESTNODE_SCOPES"
)

// Lines a process writes on its standard output.
const (
	// mpURLLine precedes the server's URL, once it listens.
	mpURLLine = "TESTNODE-URL "
	// mpResultLine precedes a client's [mpResult] in JSON.
	mpResultLine = "TESTNODE-RESULT "
	// mpHungLine is written by a hang step once the push is on its way (or
	// answered); the process then blocks until it is killed.
	mpHungLine = "TESTNODE-HUNG"
	// mpStepLine "<i> <op>" is written by a client before each step.
	mpStepLine = "TESTNODE-STEP "
	// mpProgressLine "<op> <phase> <bytes> <operations> <rows>" (see
	// mpEnvProgress).
	mpProgressLine = "TESTNODE-PROGRESS "
	// mpApplyingLine and mpAppliedLine "<version> <operations> <Unix
	// time in µs>" (see mpEnvPushHook).
	mpApplyingLine = "TESTNODE-APPLYING "
	mpAppliedLine  = "TESTNODE-APPLIED "
)

// mpStep is one action of a client script.
type mpStep struct {
	// Op is one of:
	//   exec     run SQL on the node's database
	//   insert   insert N todos titled Prefix-0…Prefix-(N-1) into the list
	//            named List, created if missing (one transaction)
	//   sync, push, pull
	//   repair   (Force)
	//   query    count the server's rows of Table matching Equal, page by page
	//   hang     push through a transport that, after the server answered
	//            (After "reply") or once the body is sent (After "send"),
	//            writes mpHungLine and blocks forever
	//   capture  push, writing the signed request to File as a [mpCaptured]
	Op     string            `json:"op"`
	SQL    string            `json:"sql,omitempty"`
	List   string            `json:"list,omitempty"`
	Prefix string            `json:"prefix,omitempty"`
	N      int               `json:"n,omitempty"`
	Force  bool              `json:"force,omitempty"`
	Table  string            `json:"table,omitempty"`
	Equal  map[string]string `json:"equal,omitempty"`
	After  string            `json:"after,omitempty"`
	File   string            `json:"file,omitempty"`
}

// mpStepResult reports one step.
type mpStepResult struct {
	Op string `json:"op"`
	// Err is the error's text and Code its wire code (dbsync.Code); both
	// empty on success.
	Err    string               `json:"err,omitempty"`
	Code   string               `json:"code,omitempty"`
	Push   *client.PushResult   `json:"push,omitempty"`
	Pull   *client.PullResult   `json:"pull,omitempty"`
	Sync   *client.SyncResult   `json:"sync,omitempty"`
	Repair *client.RepairResult `json:"repair,omitempty"`
	Rows   int                  `json:"rows,omitempty"`
}

// mpResult is a client's report.
type mpResult struct {
	NodeID int64 `json:"node_id"`
	// Registered is true when the node registered in this run.
	Registered bool           `json:"registered"`
	Steps      []mpStepResult `json:"steps"`
	// Err is a failure outside the steps (opening the database, …).
	Err string `json:"err,omitempty"`
	// PeakRSS is the process's peak resident memory (VmHWM) at the end,
	// in bytes (0 where /proc is missing).
	PeakRSS int64 `json:"peak_rss,omitempty"`
}

// mpCaptured is a signed request as it was sent.
type mpCaptured struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// mpMain runs a child process's role and returns its exit status.
func mpMain() int {
	switch role := os.Getenv(mpEnvRole); role {
	case "server":
		if err := mpServe(); err != nil {
			fmt.Fprintln(os.Stderr, "testnode server:", err)
			return 1
		}
		return 0
	case "client":
		res := mpRunClient()
		raw, _ := json.Marshal(res)
		fmt.Printf("%s%s\n", mpResultLine, raw)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "testnode: %s=%q is not a role\n", mpEnvRole, role)
		return 2
	}
}

func mpServe() error {
	ctx := context.Background()
	spec := os.Getenv(mpEnvDB)
	var db *bun.DB
	var err error
	switch {
	case strings.HasPrefix(spec, "sqlite:"):
		db, err = dbtest.OpenSQLite(strings.TrimPrefix(spec, "sqlite:"))
	case strings.HasPrefix(spec, "postgres:"):
		db, err = dbtest.OpenPostgres(strings.TrimPrefix(spec, "postgres:"))
		if err == nil {
			db.SetMaxOpenConns(8)
		}
	default:
		err = fmt.Errorf("%s=%q: want sqlite:<path> or postgres:<url>", mpEnvDB, spec)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		return err
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		return err
	}
	var cfg server.Config
	if hook := os.Getenv(mpEnvPushHook); hook != "" {
		cfg.BeforePush = func(_ context.Context, _ bun.Tx, p *server.PushInfo) error {
			fmt.Printf("%s%d %d %d\n", mpApplyingLine, p.VersionID, p.Operations, time.Now().UnixMicro())
			return nil
		}
		cfg.AfterPush = func(_ context.Context, _ bun.Tx, p *server.PushInfo) error {
			fmt.Printf("%s%d %d %d\n", mpAppliedLine, p.VersionID, p.Operations, time.Now().UnixMicro())
			if hook == "hang" {
				mpHang()
			}
			return nil
		}
	}
	if os.Getenv(mpEnvScopes) == "todos" {
		cfg.Scopes = server.Scopes{"lists": server.GlobalWritable(), "notes": server.GlobalWritable(), "todos": server.ThroughParent("list_id")}
	}
	srv, err := server.New(ctx, db, reg, synctest.OpenConfig(&cfg))
	if err != nil {
		return err
	}
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, synctest.OpenHandlers()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// The test stops the server with SIGTERM; if the test binary dies
		// instead, standard input ends.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop <- syscall.SIGTERM
	}()
	go func() {
		<-stop
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	fmt.Printf("%shttp://%s/sync\n", mpURLLine, ln.Addr())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// mpTransport sends requests, and misbehaves on pushes when told to.
type mpTransport struct {
	mu    sync.Mutex
	mode  string // "", "hang-reply", "hang-send", "capture"
	file  string
	inner http.RoundTripper
}

func (tr *mpTransport) set(mode, file string) {
	tr.mu.Lock()
	tr.mode, tr.file = mode, file
	tr.mu.Unlock()
}

// mpHang blocks until the process is killed, or its parent is gone.
func mpHang() {
	fmt.Println(mpHungLine)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(3)
}

// mpNotifyEOF calls fn once its reader is exhausted.
type mpNotifyEOF struct {
	r    io.ReadCloser
	once sync.Once
	fn   func()
}

func (n *mpNotifyEOF) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err == io.EOF {
		n.once.Do(n.fn)
	}
	return k, err
}

func (n *mpNotifyEOF) Close() error { return n.r.Close() }

func (tr *mpTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	mode, file := tr.mode, tr.file
	tr.mu.Unlock()
	if !strings.HasSuffix(r.URL.Path, "/push") {
		mode = ""
	}
	switch mode {
	case "hang-reply":
		resp, err := tr.inner.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
		mpHang()
	case "hang-send":
		sent := make(chan struct{})
		r2 := r.Clone(r.Context())
		r2.Body = &mpNotifyEOF{r: r.Body, fn: func() { close(sent) }}
		go func() {
			resp, err := tr.inner.RoundTrip(r2)
			if err == nil {
				resp.Body.Close()
			}
		}()
		<-sent
		// Let the transport flush what it read.
		time.Sleep(20 * time.Millisecond)
		mpHang()
	case "capture":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		raw, err := json.Marshal(&mpCaptured{Method: r.Method, URL: r.URL.String(), Header: r.Header.Clone(), Body: body})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			return nil, err
		}
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		r2.ContentLength = int64(len(body))
		return tr.inner.RoundTrip(r2)
	}
	return tr.inner.RoundTrip(r)
}

func mpRunClient() (res *mpResult) {
	res = &mpResult{}
	ctx := context.Background()
	var steps []mpStep
	if err := json.Unmarshal([]byte(os.Getenv(mpEnvSteps)), &steps); err != nil {
		res.Err = fmt.Sprintf("%s: %v", mpEnvSteps, err)
		return res
	}
	db, err := dbtest.OpenSQLite(os.Getenv(mpEnvDB))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer db.Close()
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		res.Err = err.Error()
		return res
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	tr := &mpTransport{inner: http.DefaultTransport}
	cfg := &client.Config{
		URL:           os.Getenv(mpEnvURL),
		HTTPClient:    &http.Client{Transport: tr},
		MaxSyncRounds: 50,
		OnProgress:    mpProgress(os.Getenv(mpEnvProgress)),
	}
	switch v := os.Getenv(mpEnvPushChunk); v {
	case "":
	case "off":
		cfg.PushChunkOperations, cfg.PushChunkBytes = math.MaxInt32, math.MaxInt32
	default:
		if cfg.PushChunkOperations, err = strconv.Atoi(v); err != nil {
			res.Err = fmt.Sprintf("%s: %v", mpEnvPushChunk, err)
			return res
		}
	}
	if v := os.Getenv(mpEnvChunk); v != "" {
		if cfg.ChunkSize, err = strconv.Atoi(v); err != nil {
			res.Err = fmt.Sprintf("%s: %v", mpEnvChunk, err)
			return res
		}
	}
	c, err := client.New(ctx, db, reg, cfg)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	ok, err := c.IsRegistered(ctx)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	if !ok {
		if _, err := c.Register(ctx, nil); err != nil {
			res.Err = "register: " + err.Error()
			return res
		}
		res.Registered = true
	}
	if res.NodeID, err = c.NodeID(ctx); err != nil {
		res.Err = err.Error()
		return res
	}
	for i, st := range steps {
		fmt.Printf("%s%d %s\n", mpStepLine, i, st.Op)
		sr := mpStepResult{Op: st.Op}
		err := mpRunStep(ctx, c, db, tr, st, &sr)
		if err != nil {
			sr.Err, sr.Code = err.Error(), dbsync.Code(err)
		}
		res.Steps = append(res.Steps, sr)
	}
	res.PeakRSS, _ = procmem.PeakRSS(os.Getpid())
	return res
}

// mpProgress returns the client's OnProgress for a mpEnvProgress value.
func mpProgress(mode string) dbsync.ProgressFunc {
	if mode == "" {
		return nil
	}
	var hangPhase string
	hangAt := 0
	if rest, ok := strings.CutPrefix(mode, "hang:"); ok {
		phase, n, _ := strings.Cut(rest, ":")
		hangPhase = phase
		hangAt, _ = strconv.Atoi(n)
	}
	seen := map[string]int{}
	return func(p dbsync.Progress) {
		fmt.Printf("%s%s %s %d %d %d\n", mpProgressLine, p.Op, p.Phase, p.Bytes, p.Operations, p.Rows)
		seen[p.Phase]++
		if p.Phase == hangPhase && seen[p.Phase] == hangAt {
			mpHang()
		}
	}
}

func mpRunStep(ctx context.Context, c *client.Client, db *bun.DB, tr *mpTransport, st mpStep, sr *mpStepResult) (err error) {
	switch st.Op {
	case "exec":
		_, err = db.ExecContext(ctx, st.SQL)
	case "insert":
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var l testmodels.List
			err := tx.NewSelect().Model(&l).Where("name = ?", st.List).Scan(ctx)
			if errors.Is(err, sql.ErrNoRows) {
				l = testmodels.List{Name: st.List}
				_, err = tx.NewInsert().Model(&l).Exec(ctx)
			}
			if err != nil {
				return err
			}
			if st.N == 0 {
				return nil
			}
			todos := make([]testmodels.Todo, st.N)
			for i := range todos {
				todos[i] = testmodels.Todo{ListID: l.ID, Title: fmt.Sprintf("%s-%d", st.Prefix, i)}
			}
			_, err = tx.NewInsert().Model(&todos).Exec(ctx)
			return err
		})
	case "sync":
		sr.Sync, err = c.Sync(ctx)
	case "push":
		sr.Push, err = c.Push(ctx)
	case "pull":
		sr.Pull, err = c.Pull(ctx)
	case "repair":
		sr.Repair, err = c.Repair(ctx, &client.RepairOptions{Force: st.Force})
	case "query":
		req := &protocol.QueryRequest{Table: st.Table, Equal: st.Equal}
		for {
			resp, err := c.Query(ctx, req)
			if err != nil {
				return err
			}
			sr.Rows += len(resp.Rows)
			if resp.Next == "" {
				return nil
			}
			req.After = resp.Next
		}
	case "hang":
		mode := "hang-reply"
		if st.After == "send" {
			mode = "hang-send"
		}
		tr.set(mode, "")
		sr.Push, err = c.Push(ctx)
		tr.set("", "")
		if err == nil {
			err = errors.New("the hung push returned")
		}
	case "capture":
		tr.set("capture", st.File)
		sr.Push, err = c.Push(ctx)
		tr.set("", "")
	default:
		err = fmt.Errorf("unknown step %q", st.Op)
	}
	return err
}

// mpReadLine reads r until a line starting with prefix and returns the rest
// of it; every line read is also copied to log.
func mpReadLine(r *bufio.Reader, prefix string, log io.Writer) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if log != nil && line != "" {
			_, _ = io.WriteString(log, line)
		}
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimRight(rest, "\r\n"), nil
		}
		if err != nil {
			return "", fmt.Errorf("no %q line: %w", strings.TrimSpace(prefix), err)
		}
	}
}
