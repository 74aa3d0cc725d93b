package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// failNth refuses the nth request (from 1) to ep without sending it.
func failNth(ep string, nth int) func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
	var mu sync.Mutex
	seen := 0
	return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		mu.Lock()
		if endpoint(r) == ep {
			seen++
			if seen == nth {
				mu.Unlock()
				return nil, errLostReply
			}
		}
		mu.Unlock()
		return forward()
	}
}

// chunkSeqs decodes the seq of recorded chunk requests.
func chunkSeqs(t *testing.T, reqs []recorded) []int {
	t.Helper()
	var out []int
	for _, r := range reqs {
		c, err := protocol.DecodePushChunk(r.body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Seq)
	}
	return out
}

// TestChunkedPush: a push above PushChunkOperations goes in chunks of at
// most that many operations, then a commit, and lands as one version with
// the same rows a single-request push gives; a push whose body would pass
// PushChunkBytes goes in chunks within that size.
func TestChunkedPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			tr := &transport{}
			a := synctest.NewClient(t, srv, "a", &client.Config{HTTPClient: tr.client(), PushChunkOperations: 10})
			l := insertList(t, a.DB, "home")
			insertTodos(t, a.DB, l, "t", 44)
			res, err := a.Push(ctx)
			if err != nil || res.Operations != 45 || res.VersionID != 1 || res.Duplicate {
				t.Fatalf("chunked push: %+v, %v", res, err)
			}
			if n := len(tr.requests("push")); n != 0 {
				t.Fatalf("%d single-request pushes", n)
			}
			if got := chunkSeqs(t, tr.requests("push-chunk")); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
				t.Fatalf("chunks sent %v, want 0-4", got)
			}
			for _, r := range tr.requests("push-chunk") {
				if c, _ := protocol.DecodePushChunk(r.body); len(c.Operations) > 10 {
					t.Fatalf("chunk %d holds %d operations", c.Seq, len(c.Operations))
				}
			}
			if n := len(tr.requests("push-commit")); n != 1 {
				t.Fatalf("%d commits", n)
			}
			if n := count(t, srv.DB, "sync_push_chunks", ""); n != 0 {
				t.Fatalf("%d chunks left staged", n)
			}
			// The same changes pushed in one request by another node of
			// another server give the same server state.
			single := synctest.NewServer(t, kind, nil)
			b := synctest.NewClient(t, single, "b", nil)
			l2 := insertList(t, b.DB, "home")
			insertTodos(t, b.DB, l2, "t", 44)
			if res, err := b.Push(ctx); err != nil || res.Operations != 45 {
				t.Fatalf("single push: %+v, %v", res, err)
			}
			if d := synctest.Diff(synctest.Dump(t, single.DB, single.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("chunked and single pushes differ:\n%s", d)
			}
			converged(t, srv, a)

			// By size: few operations, a small byte bound.
			insertTodos(t, a.DB, l, "big", 8)
			c := synctest.NewClient(t, srv, "c", &client.Config{HTTPClient: tr.client(), PushChunkBytes: 1000})
			if _, err := c.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			insertTodos(t, c.DB, l, "c", 20)
			before := len(tr.requests("push-chunk"))
			if res, err := c.Push(ctx); err != nil || res.Operations != 20 {
				t.Fatalf("push by size: %+v, %v", res, err)
			}
			sent := tr.requests("push-chunk")[before:]
			if len(sent) < 2 {
				t.Fatalf("%d chunks for a push above PushChunkBytes", len(sent))
			}
			for _, r := range sent {
				if len(r.body) > 1000 {
					t.Fatalf("chunk of %d bytes, PushChunkBytes 1000", len(r.body))
				}
			}
			converged(t, srv, c)
		})
	}
}

// TestPushProgress: a push reports prepare, upload (after each chunk the
// server holds, those it held before a cut included), commit and done,
// with the bytes and operations sent so far, never going back.
func TestPushProgress(t *testing.T) {
	t.Parallel()
	type hook = func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error)
	cases := []struct {
		name       string
		chunkOps   int         // Config.PushChunkOperations (0: the default)
		chunkBytes int         // Config.PushChunkBytes (0: the default)
		first      func() hook // a first try that fails with ErrNetwork (nil: none)
		during     func(srv *synctest.Server) hook
		uploads    int // upload reports; -1: two or more
		duplicate  bool
	}{
		{name: "single request"},
		{name: "chunked", chunkOps: 10, uploads: 5},
		{name: "chunked by size", chunkBytes: 1500, uploads: -1},
		{name: "resumed after a cut", chunkOps: 10, first: func() hook { return failNth("push-chunk", 4) }, uploads: 5},
		{name: "answer lost, then a duplicate", chunkOps: 10, first: func() hook { return loseReply("push-commit") }, duplicate: true},
		{name: "a chunk lost by the server, resent", chunkOps: 10, uploads: 5, during: func(srv *synctest.Server) hook {
			var once sync.Once
			return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
				if endpoint(r) == "push-commit" {
					once.Do(func() {
						if _, err := srv.DB.ExecContext(context.Background(), "DELETE FROM sync_push_chunks WHERE seq = 2"); err != nil {
							panic(err)
						}
					})
				}
				return forward()
			}
		}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewServer(t, kind, nil)
				tr := &transport{}
				var mu sync.Mutex
				var reports []dbsync.Progress
				a := synctest.NewClient(t, srv, "a", &client.Config{HTTPClient: tr.client(),
					PushChunkOperations: tc.chunkOps, PushChunkBytes: tc.chunkBytes,
					OnProgress: func(p dbsync.Progress) {
						mu.Lock()
						defer mu.Unlock()
						reports = append(reports, p)
					}})
				l := insertList(t, a.DB, "home")
				insertTodos(t, a.DB, l, "t", 44)
				if tc.first != nil {
					tr.setHook(tc.first())
					if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
						t.Fatalf("first try: %v, want ErrNetwork", err)
					}
				}
				tr.setHook(nil)
				if tc.during != nil {
					tr.setHook(tc.during(srv))
				}
				mu.Lock()
				reports = nil
				mu.Unlock()
				res, err := a.Push(ctx)
				if err != nil || res.Operations != 45 || res.Duplicate != tc.duplicate {
					t.Fatalf("push: %+v, %v", res, err)
				}
				if tc.during != nil && len(tr.requests("push-commit")) < 2 {
					t.Fatal("the commit was not refused and tried again")
				}
				mu.Lock()
				defer mu.Unlock()
				var phases []string
				var bytes, ops int64
				uploads := 0
				for i, p := range reports {
					if p.Op != "push" || p.Rows != 0 {
						t.Fatalf("report %d: %+v", i, p)
					}
					phases = append(phases, p.Phase)
					if p.Phase == "upload" {
						uploads++
						if p.Bytes <= bytes || p.Operations <= ops {
							t.Fatalf("upload report %d goes back: %+v after %d bytes, %d operations", i, p, bytes, ops)
						}
						bytes, ops = p.Bytes, p.Operations
					}
				}
				want := []string{"prepare"}
				switch {
				case tc.duplicate:
				case tc.uploads < 0 && uploads < 2:
					t.Fatalf("%d upload reports, want two or more: %v", uploads, phases)
				default:
					if tc.uploads >= 0 {
						uploads = tc.uploads
					}
					for range uploads {
						want = append(want, "upload")
					}
					want = append(want, "commit")
				}
				want = append(want, "done")
				if !slices.Equal(phases, want) {
					t.Fatalf("phases %v, want %v", phases, want)
				}
				if p := reports[0]; p.Operations != 45 || p.Bytes != 0 {
					t.Fatalf("prepare: %+v, want 45 operations", p)
				}
				if uploads > 0 && (ops != 45 || bytes != int64(res.Bytes)) {
					t.Fatalf("last upload: %d bytes, %d operations; push sent %d bytes, 45 operations", bytes, ops, res.Bytes)
				}
				if !tc.duplicate {
					for _, p := range reports[len(reports)-2:] {
						if p.Operations != 45 || p.Bytes != int64(res.Bytes) || p.Bytes == 0 {
							t.Fatalf("%s: %+v; push sent %d bytes, 45 operations", p.Phase, p, res.Bytes)
						}
					}
				}
				converged(t, srv, a)
			})
		}
	}
}

// TestChunkedPushResume: a push cut after k chunks resumes without
// resending them; a commit whose answer was lost is applied once.
func TestChunkedPushResume(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			tr := &transport{}
			a := synctest.NewClient(t, srv, "a", &client.Config{HTTPClient: tr.client(), PushChunkOperations: 10})
			l := insertList(t, a.DB, "home")
			insertTodos(t, a.DB, l, "t", 44)

			// Cut at the fourth chunk: three are staged.
			tr.setHook(failNth("push-chunk", 4))
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("cut push: %v, want ErrNetwork", err)
			}
			if n := count(t, srv.DB, "sync_push_chunks", ""); n != 3 {
				t.Fatalf("%d chunks staged after the cut, want 3", n)
			}
			tr.setHook(nil)
			before := len(tr.requests("push-chunk"))
			res, err := a.Push(ctx)
			if err != nil || res.VersionID != 1 || res.Duplicate || res.Operations != 45 {
				t.Fatalf("resumed push: %+v, %v", res, err)
			}
			if got := chunkSeqs(t, tr.requests("push-chunk")[before:]); !slices.Equal(got, []int{3, 4}) {
				t.Fatalf("resume sent chunks %v, want 3 and 4", got)
			}
			if n := len(tr.requests("push-status")); n != 1 {
				t.Fatalf("%d status requests, want 1", n)
			}
			converged(t, srv, a)

			// The commit's answer is lost: the retry asks, sends nothing
			// again, and reports the version once.
			insertTodos(t, a.DB, l, "u", 25)
			tr.setHook(loseReply("push-commit"))
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost commit reply: %v", err)
			}
			tr.setHook(nil)
			if n := count(t, srv.DB, "sync_versions", ""); n != 2 {
				t.Fatalf("%d versions after the lost commit reply, want 2", n)
			}
			chunks, commits := len(tr.requests("push-chunk")), len(tr.requests("push-commit"))
			res, err = a.Push(ctx)
			if err != nil || !res.Duplicate || res.VersionID != 2 || res.Operations != 25 {
				t.Fatalf("retry: %+v, %v", res, err)
			}
			if n := len(tr.requests("push-chunk")) - chunks; n != 0 {
				t.Fatalf("retry resent %d chunks", n)
			}
			if n := len(tr.requests("push-commit")) - commits; n != 0 {
				t.Fatalf("retry sent %d commits", n)
			}
			if n := count(t, srv.DB, "todos", ""); n != 69 {
				t.Fatalf("server has %d todos, want 69", n)
			}
			converged(t, srv, a)
		})
	}
}

// TestChunkedPushBehind: a chunked push whose base is stale is refused at
// commit; Sync pulls and pushes again in chunks; nothing stays staged.
func TestChunkedPushBehind(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			a := synctest.NewClient(t, srv, "a", &client.Config{PushChunkOperations: 5})
			b := synctest.NewClient(t, srv, "b", nil)
			insertList(t, b.DB, "work")
			if _, err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			l := insertList(t, a.DB, "home")
			insertTodos(t, a.DB, l, "t", 12)
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push behind: %v, want ErrPullNeeded", err)
			}
			if n := count(t, srv.DB, "sync_push_chunks", ""); n != 0 {
				t.Fatalf("%d chunks staged after pull_needed", n)
			}
			if n := count(t, a.DB, "sync_push_attempts", ""); n != 0 {
				t.Fatalf("%d push attempts kept after pull_needed", n)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("b sync: %v", err)
			}
			if n := count(t, srv.DB, "todos", ""); n != 12 {
				t.Fatalf("server has %d todos, want 12", n)
			}
			converged(t, srv, a, b)
		})
	}
}

// TestChunkedPushInProcess: the in-process transport carries chunked
// pushes as HTTP does.
func TestChunkedPushInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewClient(t, srv, "a", &client.Config{PushChunkOperations: 3})
	l := insertList(t, a.DB, "home")
	insertTodos(t, a.DB, l, "t", 10)
	if res, err := a.Push(ctx); err != nil || res.Operations != 11 || res.VersionID != 1 {
		t.Fatalf("push: %+v, %v", res, err)
	}
	converged(t, srv, a)
}

// selectBytes counts the bytes of the SELECT statements a database runs
// that name a table: with text keys written as literals, the key bytes
// read back from it.
type selectBytes struct {
	table string
	n     atomic.Int64
}

func (h *selectBytes) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if strings.HasPrefix(e.Query, "SELECT") && strings.Contains(e.Query, h.table) {
		h.n.Add(int64(len(e.Query)))
	}
	return ctx
}

func (h *selectBytes) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestChunkedPushLargeRows: a push whose rows are large beside
// PushChunkBytes (keys of 4 KB, a few rows a chunk) reads each row about
// once to build its chunks, not once for every chunk cut from the rest of
// its page (which was quadratic in the push's size), and stores the same
// rows as a push in one request. Nodes on both databases.
func TestChunkedPushLargeRows(t *testing.T) {
	t.Parallel()
	const rowsN, keyBytes = 60, 4000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*boundParent)(nil), (*boundChild)(nil)}
			schema := synctest.CreateTables(models...)
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "bound", schema, models), schema, models, nil)
			tr := &transport{}
			hook := &selectBytes{table: "bparents"}
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "bound", schema, models).WithQueryHook(hook), schema, models,
				&client.Config{HTTPClient: tr.client(), PushChunkBytes: 5 * keyBytes})
			rows := make([]boundParent, rowsN)
			for i := range rows {
				rows[i].ID = fmt.Sprintf("%04d", i) + strings.Repeat("k", keyBytes)
			}
			if _, err := a.DB.NewInsert().Model(&rows).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			hook.n.Store(0) // count the push's reads only
			if res, err := a.Push(ctx); err != nil || res.Operations != rowsN {
				t.Fatalf("push: %+v, %v", res, err)
			}
			if chunks := len(tr.requests("push-chunk")); chunks < rowsN/3 {
				t.Fatalf("%d chunks, want at least %d", chunks, rowsN/3)
			}
			// Reading every key once costs rowsN*keyBytes; the push
			// preparation reads them once more, and a chunk found too
			// large rereads a few.
			if read, once := hook.n.Load(), int64(rowsN*keyBytes); read < once || read > 4*once {
				t.Fatalf("%d bytes of SELECT on the rows for %d bytes of keys: want 1 to 4 reads each", read, once)
			}
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "bound", schema, models), schema, models, nil)
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
				t.Fatalf("pulled rows differ from the pushed ones:\n%s", d)
			}
		})
	}
}

// TestPushWaitsForOpenWriters: an application transaction logs a change
// before the push reads the log, and commits while the push prepares; a
// later change commits first. The push's attempt covers the operations
// up to the greatest it reads, which leave the log once it is applied: on
// PostgreSQL, which numbers operations as they are written, the slow
// change was numbered below and deleted unsent, lost for good. The push
// now waits for the transactions writing the log (dialect.LockLog).
func TestPushWaitsForOpenWriters(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
			tr := &hookTransport{Transport: synctest.NewTransport(srv.Srv)}
			db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
			a := synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), &client.Config{Transport: tr})
			l := insertList(t, a.DB, "home")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			slow, err := a.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			insertTodos(t, slow, l, "slow", 1) // logged, not committed
			committed := make(chan struct{})
			time.AfterFunc(300*time.Millisecond, func() {
				if err := slow.Commit(); err != nil {
					t.Error(err)
				}
				close(committed)
			})
			insertTodos(t, a.DB, l, "fast", 1) // logged after it (SQLite: once it commits)
			// The push's answer comes once the slow change committed.
			tr.onPush = func() { tr.onPush = nil; <-committed }
			if _, err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if n := count(t, srv.DB, "todos", ""); n != 2 {
				t.Fatalf("the server holds %d todos, want 2 (slow and fast); the node holds %d, %d operations pending",
					n, count(t, a.DB, "todos", ""), count(t, a.DB, "sync_operations", "version_id IS NULL"))
			}
		})
	}
}

// TestPushLogBusy: on a PostgreSQL node, a push prepared while an
// application transaction that wrote a tracked table stays open longer
// than the push waits for it fails with dbsync.ErrLogBusy (users could
// not tell it from other failures) and sends nothing; once the
// transaction ends, the push goes through. (The wait is 10 s; the test
// makes it 200 ms.)
func TestPushLogBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
	db := synctest.ClientDB(t, dbtest.KindPostgres, "testmodels", testmodels.CreateSchema, synctest.Models())
	a := synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), nil)
	client.SetLogLockWait(a.Client, 200*time.Millisecond)
	l := insertList(t, a.DB, "home")
	open, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback()
	insertTodos(t, open, l, "open", 1) // logged, not committed
	if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrLogBusy) {
		t.Fatalf("push while a writer stays open: %v, want ErrLogBusy", err)
	}
	if n := count(t, srv.DB, "lists", ""); n != 0 {
		t.Fatalf("the refused push sent %d lists", n)
	}
	if err := open.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Push(ctx); err != nil {
		t.Fatalf("push once the writer committed: %v", err)
	}
	if n := count(t, srv.DB, "todos", ""); n != 1 {
		t.Fatalf("the server holds %d todos, want 1", n)
	}
}
