package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
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

// Answers a real server never gives (a broken proxy, a buggy or hostile
// server), over real HTTP on loopback to a real client on a SQLite file:
// each is refused with dbsync.ErrBadResponse, and the node's database
// keeps its state. Found by a review attacking the client from the
// server's side.

// fakeServer answers the client's HTTP requests with crafted answers.
type fakeServer struct {
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]*atomic.Int64
	ts       *httptest.Server
}

func newFake(t *testing.T) *fakeServer {
	f := &fakeServer{handlers: map[string]http.HandlerFunc{}, hits: map[string]*atomic.Int64{}}
	for _, ep := range []string{"register", "push", "pull", "repair", "query", "watch", "push-chunk", "push-commit", "push-status"} {
		f.hits[ep] = &atomic.Int64{}
	}
	f.handlers["register"] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"node":{"node_id":7,"registered":"2024-01-01T00:00:00Z","secret":"s3cr3t"}}`)
	}
	f.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep := path.Base(r.URL.Path)
		if c := f.hits[ep]; c != nil {
			c.Add(1)
		}
		f.mu.Lock()
		h := f.handlers[ep]
		f.mu.Unlock()
		if h == nil {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"error":{"code":"internal","message":"no handler"}}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fakeServer) on(ep string, h http.HandlerFunc) {
	f.mu.Lock()
	f.handlers[ep] = h
	f.mu.Unlock()
}

// ndjson answers with fixed NDJSON lines.
func ndjson(lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

func jsonAnswer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}
}

// newHostileClient builds a real client on a SQLite file, registered with f.
func newHostileClient(t *testing.T, f *fakeServer, cfg *client.Config, models ...any) (*client.Client, *bun.DB) {
	t.Helper()
	ctx := context.Background()
	key := "testmodels"
	if len(models) == 0 {
		models = synctest.Models()
	} else {
		key = fmt.Sprintf("hostile-%v", models)
	}
	db := synctest.ClientSQLite(t, key, testmodels.CreateSchema, models)
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	c := client.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.URL = f.ts.URL + "/sync"
	cl, err := client.New(ctx, db, reg, &c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(ctx, nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	return cl, db
}

const maxInt64 = "9223372036854775807"

// TestBadPullAnswers: pull answers that would rewrite the node's keys,
// stop its inserts, write a table it only pushes, or move its version
// where the server is not.
func TestBadPullAnswers(t *testing.T) {
	t.Parallel()
	at5 := []string{`{"type":"header","latest_version_id":5}`,
		`{"type":"versions","versions":[{"version_id":5,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`, `{"type":"end"}`}
	for _, tc := range []struct {
		name     string
		pushOnly bool     // todos is push-only
		before   []string // a first answer, applied
		answer   []string
	}{
		{name: "max_keys beyond int64's room",
			answer: []string{`{"type":"header","latest_version_id":0,"max_keys":{"lists":` + maxInt64 + `}}`, `{"type":"end"}`}},
		{name: "negative max_keys",
			answer: []string{`{"type":"header","latest_version_id":0,"max_keys":{"lists":-5}}`, `{"type":"end"}`}},
		{name: "max_keys of a push-only table", pushOnly: true,
			answer: []string{`{"type":"header","latest_version_id":0,"max_keys":{"todos":` + maxInt64 + `}}`, `{"type":"end"}`}},
		{name: "a chunk writing a push-only table", pushOnly: true,
			answer: []string{`{"type":"header","latest_version_id":1}`,
				`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`,
				`{"type":"chunk","operations":[{"order":1,"table":"todos","row_id":"1","command":"d","version_id":1},{"order":2,"table":"todos","row_id":"99","command":"i","version_id":1}],"payload":{"todos":[{"id":99,"list_id":1,"title":"injected","done":false}]}}`,
				`{"type":"end","operation_count":2,"row_count":1}`}},
		{name: "a version past the header",
			answer: []string{`{"type":"header","latest_version_id":3}`,
				`{"type":"versions","versions":[{"version_id":` + maxInt64 + `,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`, `{"type":"end"}`}},
		{name: "a header behind the node", before: at5,
			answer: []string{`{"type":"header","latest_version_id":2}`, `{"type":"end"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFake(t)
			models := []any{(*testmodels.List)(nil), (*testmodels.Todo)(nil), (*testmodels.Note)(nil)}
			if tc.pushOnly {
				models[1] = dbsync.PushOnly((*testmodels.Todo)(nil))
			}
			cl, db := newHostileClient(t, f, nil, models...)
			if tc.before != nil {
				f.on("pull", ndjson(tc.before...))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
			}
			list := insertList(t, db, "mine")
			insertTodos(t, db, list, "mine", 2)
			version, err := cl.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			f.on("pull", ndjson(tc.answer...))
			if _, err := cl.Pull(ctx); !errors.Is(err, dbsync.ErrBadResponse) {
				t.Fatalf("pull: %v, want ErrBadResponse", err)
			}
			after := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			if v, _ := cl.Version(ctx); before != after || v != version {
				t.Fatalf("the refused pull changed the node: %s, version %d; before %s, version %d", after, v, before, version)
			}
			var id int64
			if err := db.NewRaw("SELECT id FROM lists WHERE name = 'mine'").Scan(ctx, &id); err != nil || id != list {
				t.Fatalf("the node's list has key %d (%v), want %d", id, err, list)
			}
			insertTodos(t, db, list, "later", 1) // inserts still work
		})
	}
}

// TestBadPushAnswer: a push answered with a version at or below its base
// (a push creates a version after it), or answered empty (nothing
// applied) though it sent operations, is not recorded as applied: the
// node's operations stay in its log.
func TestBadPushAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	f.on("pull", ndjson(`{"type":"header","latest_version_id":5}`,
		`{"type":"versions","versions":[{"version_id":5,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`, `{"type":"end"}`))
	cl, db := newHostileClient(t, f, nil)
	if _, err := cl.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	insertList(t, db, "unpushed")
	for _, v := range []string{"2", "5", "0", "-1"} {
		f.on("push", jsonAnswer(`{"new_version_id":`+v+`}`))
		if _, err := cl.Push(ctx); !errors.Is(err, dbsync.ErrBadResponse) {
			t.Fatalf("push answered with version %s: %v, want ErrBadResponse", v, err)
		}
		if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
			t.Fatalf("push answered with version %s: %d operations pending, want 1", v, n)
		}
	}
	// Empty: the server applied no operation, whatever the version.
	for _, v := range []string{"9", "0"} {
		f.on("push", jsonAnswer(`{"new_version_id":`+v+`,"empty":true}`))
		if _, err := cl.Push(ctx); !errors.Is(err, dbsync.ErrBadResponse) {
			t.Fatalf("push answered empty with version %s: %v, want ErrBadResponse", v, err)
		}
		if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
			t.Fatalf("push answered empty with version %s: %d operations pending, want 1", v, n)
		}
	}
}

// TestBadQueryCursor: QueryAll stops when a page's cursor comes again
// (it followed it for ever).
func TestBadQueryCursor(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("query", jsonAnswer(`{"rows":[{"id":1,"name":"a"}],"next":"1"}`))
	cl, _ := newHostileClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.QueryAll[testmodels.List](ctx, cl, nil); !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("QueryAll: %v, want ErrBadResponse", err)
	}
	if n := f.hits["query"].Load(); n != 2 {
		t.Fatalf("QueryAll sent %d requests, want 2", n)
	}
}

// TestRegisterAgainLowerID: registering again uses the new node, whatever
// its id (a replaced server hands ids out again); a node id of 0 or
// below is a bad answer.
func TestRegisterAgainLowerID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, _ := newHostileClient(t, f, nil) // node 7
	f.on("register", jsonAnswer(`{"node":{"node_id":3,"registered":"2024-01-02T00:00:00Z","secret":"new"}}`))
	n, err := cl.Register(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := cl.NodeID(ctx); err != nil || id != n.NodeID {
		t.Fatalf("Register returned node %d but the client uses node %d (%v)", n.NodeID, id, err)
	}
	f.on("register", jsonAnswer(`{"node":{"node_id":-4,"registered":"2024-01-02T00:00:00Z","secret":"new"}}`))
	if _, err := cl.Register(ctx, nil); !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("register answered node -4: %v, want ErrBadResponse", err)
	}
	if id, _ := cl.NodeID(ctx); id != 3 {
		t.Fatalf("after a refused registration the client uses node %d, want 3", id)
	}
}

// TestWatchStalledAnswer: a watch answer whose body stalls without the
// connection closing (the JSON answer cut after its headers, or a carried
// pull's header line in the x-ndjson answer) is given up after Wait and
// Stall, and the request made again: it held the loop for ever.
func TestWatchStalledAnswer(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"json", "x-ndjson"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("pull", ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`))
			var first atomic.Bool
			f.on("watch", func(w http.ResponseWriter, r *http.Request) {
				if !first.Swap(true) {
					w.Header().Set("Content-Type", "application/"+kind)
					w.WriteHeader(200)
					if kind == "json" {
						fmt.Fprint(w, `{"latest_version_id":`)
					}
					w.(http.Flusher).Flush()
					<-r.Context().Done() // stall
					return
				}
				jsonAnswer(`{"latest_version_id":0,"changed":false}`)(w, r)
			})
			cl, _ := newHostileClient(t, f, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- cl.Watch(ctx, &client.WatchOptions{Wait: 200 * time.Millisecond, Stall: 300 * time.Millisecond,
					MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			}()
			for f.hits["watch"].Load() < 2 && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			n := f.hits["watch"].Load()
			cancel()
			<-done
			if n < 2 {
				t.Fatalf("Watch stayed on one stalled watch answer and never asked again")
			}
		})
	}
}

// TestWatchBehindWithoutProgress: a server whose watch answers say it
// holds a version the node lacks (a JSON answer, or a carried pull) while
// its pulls bring none gets the watch requests of a failure, paused with
// backoff: they came back at once, hundreds a second.
func TestWatchBehindWithoutProgress(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"json", "x-ndjson"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			empty := ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`)
			f.on("pull", empty)
			if kind == "json" {
				f.on("watch", jsonAnswer(`{"latest_version_id":5,"changed":true}`))
			} else {
				f.on("watch", empty) // a carried pull
			}
			cl, _ := newHostileClient(t, f, nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			// Pauses of 50–100, 100–200, 200–400 ms, then 250–500 ms:
			// at most 6 requests in the second.
			err := cl.Watch(ctx, &client.WatchOptions{Wait: 200 * time.Millisecond,
				MinBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("watch: %v, want the context's end", err)
			}
			if n := f.hits["watch"].Load(); n < 1 || n >= 20 {
				t.Fatalf("%d watch requests in 1 s, want 1 to 19", n)
			}
		})
	}
}

// TestServerKeyNearMaxInt64: a server row keyed near the top of int64 (a
// sentinel, a hashed id) is a legitimate answer: a node with nothing to
// renumber pulls it (an early bound on max_keys refused it, for good).
func TestServerKeyNearMaxInt64(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			if _, err := srv.DB.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (9223372036854775000, 'sentinel')"); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			b := synctest.NewClient(t, srv, "b", nil)
			if _, err := b.Pull(ctx); err != nil {
				t.Fatalf("pull: %v", err)
			}
			if n := count(t, b.DB, "lists", "id = 9223372036854775000"); n != 1 {
				t.Fatalf("the node holds %d sentinel rows, want 1", n)
			}
		})
	}
}

// TestBadPushStatusAnswer: a push-status answer about another push (or
// naming none), to a resumed chunked push or to a reset settling its lost
// push, is not taken as this push's: the node's operations stay in its
// log, and its push attempt with them.
func TestBadPushStatusAnswer(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"push", "reset"} {
		for _, tc := range []struct{ name, answer string }{
			{"another push applied", `{"push_id":"00000000-0000-4000-8000-000000000000","version_id":1,"chunks":[]}`},
			{"no push id", `{"version_id":1,"chunks":[]}`},
			{"another push's chunks", `{"push_id":"00000000-0000-4000-8000-000000000000","chunks":[{"seq":0,"digest":"x"}]}`},
		} {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				cl, db := newHostileClient(t, f, &client.Config{PushChunkOperations: 2})
				l := insertList(t, db, "unpushed")
				insertTodos(t, db, l, "t", 3)
				// The first try fails (no push-chunk handler: 500): its
				// attempt stays, and the next push or reset asks for its
				// status.
				if _, err := cl.Push(ctx); err == nil {
					t.Fatal("first push succeeded")
				}
				var attempt string
				if err := db.NewRaw("SELECT push_id FROM sync_push_attempts").Scan(ctx, &attempt); err != nil {
					t.Fatal(err)
				}
				f.on("push-status", jsonAnswer(tc.answer))
				f.on("repair", ndjson(`{"type":"header","latest_version_id":1,"tables":["lists","notes","todos"]}`, `{"type":"end"}`))
				var err error
				if op == "push" {
					_, err = cl.Push(ctx)
				} else {
					_, err = cl.Reset(ctx)
				}
				if !errors.Is(err, dbsync.ErrBadResponse) {
					t.Fatalf("%s: %v, want ErrBadResponse", op, err)
				}
				if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 4 {
					t.Fatalf("%d operations pending, want 4", n)
				}
				if n := count(t, db, "sync_push_attempts", "push_id = ?", attempt); n != 1 {
					t.Fatalf("%d push attempts %s, want 1", n, attempt)
				}
			})
		}
	}
}

// TestBadLostPushAnswer: a pull whose header reports the node's lost
// push applied as a version the header's latest does not reach (or at
// the push's base) is refused: the push's operations stay pending.
func TestBadLostPushAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		latest  string
		version string
	}{
		{"beyond the latest", "1", "9"},
		{"far beyond the latest", "1", maxInt64},
		{"at the base", "0", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFake(t)
			cl, db := newHostileClient(t, f, nil)
			insertList(t, db, "unpushed")
			if _, err := cl.Push(ctx); err == nil { // no push handler: 500
				t.Fatal("first push succeeded")
			}
			f.on("pull", func(w http.ResponseWriter, r *http.Request) {
				var req protocol.PullRequest
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.PushID == "" {
					t.Errorf("pull request without its push id: %v", err)
				}
				lines := []string{`{"type":"header","latest_version_id":` + tc.latest + `,"push":{"push_id":"` + req.PushID + `","version_id":` + tc.version + `}}`}
				if tc.latest != "0" {
					lines = append(lines, `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`)
				}
				ndjson(append(lines, `{"type":"end"}`)...)(w, r)
			})
			if _, err := cl.Pull(ctx); !errors.Is(err, dbsync.ErrBadResponse) {
				t.Fatalf("pull: %v, want ErrBadResponse", err)
			}
			if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
				t.Fatalf("%d operations pending, want 1", n)
			}
			if n := count(t, db, "sync_push_attempts", ""); n != 1 {
				t.Fatalf("%d push attempts, want 1", n)
			}
		})
	}
}

// TestWatchInstantAnswer: a server that answers each watch request at
// once with no new version (it ignores wait_ms, or says changed with a
// version the node holds) gets its next request after a pause, as a
// failure does: the loop sent them back to back, thousands a second. The
// pause (MinBackoff: an hour) is longer than the test: one request.
func TestWatchInstantAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		at5    bool // the node holds version 5
		answer string
	}{
		{"not changed", false, `{"latest_version_id":0,"changed":false}`},
		{"changed to the node's version", true, `{"latest_version_id":5,"changed":true}`},
		{"behind the node", true, `{"latest_version_id":2,"changed":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("pull", ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`))
			f.on("watch", jsonAnswer(tc.answer))
			cl, _ := newHostileClient(t, f, nil)
			if tc.at5 {
				f.on("pull", ndjson(`{"type":"header","latest_version_id":5}`,
					`{"type":"versions","versions":[{"version_id":5,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`, `{"type":"end"}`))
				if _, err := cl.Pull(context.Background()); err != nil {
					t.Fatal(err)
				}
				f.on("pull", ndjson(`{"type":"header","latest_version_id":5}`, `{"type":"end"}`))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := cl.Watch(ctx, &client.WatchOptions{Wait: 10 * time.Second, MinBackoff: time.Hour})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("watch: %v, want the context's end", err)
			}
			if n := f.hits["watch"].Load(); n != 1 {
				t.Fatalf("%d watch requests, want 1 then a pause", n)
			}
		})
	}
}

// TestRedirectElsewhere: the default HTTP client does not follow a
// redirect to another host: the node's signed request, its rows, would
// go to a server it was never configured for. The call fails with
// dbsync.ErrBadResponse naming the redirect, and the other host gets
// nothing.
func TestRedirectElsewhere(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(other.Close)
	// The same address under another host name.
	to := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, ep := range []string{"pull", "push", "register"} {
			t.Run(fmt.Sprint(code, ep), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				cl, db := newHostileClient(t, f, nil)
				insertList(t, db, "mine")
				f.on(ep, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, to+r.URL.Path, code)
				})
				var err error
				switch ep {
				case "pull":
					_, err = cl.Pull(ctx)
				case "push":
					_, err = cl.Push(ctx)
				case "register":
					_, err = cl.Register(ctx, nil)
				}
				if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), "redirect") {
					t.Fatalf("%s: %v, want ErrBadResponse naming the redirect", ep, err)
				}
				if n := elsewhere.Load(); n != 0 {
					t.Fatalf("the other host got %d requests", n)
				}
			})
		}
	}
}
