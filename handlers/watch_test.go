package handlers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// answer is an HTTP answer received in another goroutine.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// send sends req in a goroutine; the answer arrives on the channel.
func send(req *http.Request) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- answer{status: resp.StatusCode, header: resp.Header, body: body, err: err}
	}()
	return out
}

// hangGuard bounds a wait that only a bug makes long (a waiter never
// woken); it is not a measure of speed.
const hangGuard = 2 * time.Minute

// receive waits for an answer.
func receive(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a
	case <-time.After(hangGuard):
		t.Fatal("no answer: the watch request was never woken")
	}
	return answer{}
}

// watchAnswer decodes a 200 answer of /watch.
func watchAnswer(t *testing.T, a answer) protocol.WatchResponse {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("watch: %d %s", a.status, a.body)
	}
	var r protocol.WatchResponse
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("watch answer %s: %v", a.body, err)
	}
	return r
}

// parked waits until srv holds n Watch calls waiting.
func parked(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for srv.Watching() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d watch calls waiting, want %d", srv.Watching(), n)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func watchQuery(after int64, wait time.Duration) string {
	return (&protocol.WatchRequest{After: after, Wait: wait}).Values().Encode()
}

// TestWatchWakes: a held watch request is answered when a push commits a
// version after its after=, with that version; on PostgreSQL also when
// the push goes through another server process on the same database
// (NOTIFY), which has no other way to learn of it (it does not poll while
// it listens, and the request waits up to an hour).
func TestWatchWakes(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			long := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour}
			e := newEnv(t, kind, &envConfig{handlers: long, server: &server.Config{WatchPoll: time.Hour}})
			v0 := e.latest()
			ch := send(e.request(http.MethodGet, "watch", watchQuery(v0, time.Hour), nil))
			parked(t, e.s.Srv, 1)
			if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			got := watchAnswer(t, receive(t, ch))
			if want := (protocol.WatchResponse{LatestVersionID: e.latest(), Changed: true}); got != want || got.LatestVersionID <= v0 {
				t.Fatalf("watch = %+v, want %+v", got, want)
			}
			// Already behind: answered at once.
			got = watchAnswer(t, receive(t, send(e.request(http.MethodGet, "watch", watchQuery(v0, time.Hour), nil))))
			if !got.Changed || got.LatestVersionID != e.latest() {
				t.Fatalf("watch from an old version = %+v", got)
			}
			if kind != dbtest.KindPostgres {
				return
			}

			// A second server process: its own Server, pool and handlers on
			// the same schema.
			u, err := url.Parse(dbtest.PostgresURL(t))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("search_path", e.schema(t))
			u.RawQuery = q.Encode()
			db2, err := dbtest.OpenPostgres(u.String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db2.Close() })
			db2.SetMaxOpenConns(2) // the listener's connection and one
			srv2, _ := synctest.NewHandler(t, db2, testmodels.All(), &server.Config{WatchPoll: time.Hour})
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(srv2, long))
			hs := httptest.NewServer(r)
			t.Cleanup(hs.Close)
			t.Cleanup(func() { _ = srv2.Close() })
			other := e.with(t)
			other.url = hs.URL + "/sync"
			// The first wake may come from the listener's start (it reads the
			// latest version once it listens); after it, the listener is up.
			for i, id := range []int64{2, 3} {
				before := e.latest()
				ch := send(other.request(http.MethodGet, "watch", watchQuery(before, time.Hour), nil))
				parked(t, srv2, 1)
				if status, raw, _ := e.push(e.pushBody(id, "list "+strconv.FormatInt(id, 10))); status != http.StatusOK {
					t.Fatalf("push: %d %s", status, raw)
				}
				got := watchAnswer(t, receive(t, ch))
				if want := (protocol.WatchResponse{LatestVersionID: e.latest(), Changed: true}); got != want {
					t.Fatalf("watch %d on the other process = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// schema returns the PostgreSQL schema of the env's server.
func (e *env) schema(t *testing.T) string {
	t.Helper()
	var s string
	if err := e.s.DB.NewRaw("SELECT current_schema()").Scan(ctx, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWatchTimeout: without a new version the request is answered
// "no change" once its wait (or the server's WatchTimeout) ends.
func TestWatchTimeout(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			short := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: 50 * time.Millisecond}
			e := newEnv(t, kind, &envConfig{handlers: short})
			if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			v := e.latest()
			for _, wait := range []time.Duration{0, 20 * time.Millisecond, time.Hour} {
				got := watchAnswer(t, receive(t, send(e.request(http.MethodGet, "watch", watchQuery(v, wait), nil))))
				if want := (protocol.WatchResponse{LatestVersionID: v}); got != want {
					t.Fatalf("watch(wait %s) = %+v, want %+v", wait, got, want)
				}
			}
			// A node ahead of the server waits too, and learns the latest.
			got := watchAnswer(t, receive(t, send(e.request(http.MethodGet, "watch", watchQuery(v+5, 0), nil))))
			if want := (protocol.WatchResponse{LatestVersionID: v}); got != want {
				t.Fatalf("watch ahead = %+v, want %+v", got, want)
			}
		})
	}
}

// TestWatchRefusals: a watch request is signed and checked like every
// other; a refusal is a JSON error and nothing waits.
func TestWatchRefusals(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			cases := []struct {
				name   string
				query  string
				opts   []opt
				status int
				code   string
			}{
				{"bad signature", "after=0", []opt{withSecret(strings.Repeat("0", 64))}, 401, protocol.CodeUnauthorized},
				{"unsigned", "after=0", []opt{unsigned()}, 401, protocol.CodeUnauthorized},
				{"query not signed", "after=0", []opt{withSignedQuery("after=1")}, 401, protocol.CodeUnauthorized},
				{"other endpoint", "after=0", []opt{withEndpoint("query")}, 401, protocol.CodeUnauthorized},
				{"unknown node", "after=0", []opt{withNode(e.node.NodeID + 100)}, 401, protocol.CodeUnauthorized},
				{"stale", "after=0", []opt{withTime(time.Now().Add(-time.Hour))}, 401, protocol.CodeUnauthorized},
				{"no after", "", nil, 400, protocol.CodeBadRequest},
				{"negative after", "after=-1", nil, 400, protocol.CodeBadRequest},
				{"bad wait", "after=0&wait_ms=x", nil, 400, protocol.CodeBadRequest},
				{"wait too long", "after=0&wait_ms=3600001", nil, 400, protocol.CodeBadRequest},
				{"unknown parameter", "after=0&x=1", nil, 400, protocol.CodeBadRequest},
				{"twice", "after=0&after=1", nil, 400, protocol.CodeBadRequest},
				{"schema", "after=0", []opt{setHeader(protocol.HeaderSchema, "nope")}, 409, protocol.CodeSchemaMismatch},
			}
			for _, c := range cases {
				status, raw, d := e.do(e.request(http.MethodGet, "watch", c.query, nil, c.opts...))
				if status != c.status || d.Code != c.code {
					t.Errorf("%s: %d %s, want %d %s", c.name, status, raw, c.status, c.code)
				}
			}
			if n := e.s.Srv.Watching(); n != 0 {
				t.Fatalf("%d watch calls waiting after refusals", n)
			}
			status, raw, _ := e.do(e.request(http.MethodPost, "watch", "after=0", nil))
			if status != http.StatusMethodNotAllowed && status != http.StatusNotFound {
				t.Fatalf("POST watch: %d %s", status, raw)
			}
		})
	}
}

// TestWatchBounds: beyond MaxWatchers requests held, one more is answered
// 503 busy with Retry-After; Server.Close answers the held ones (503) and
// refuses later ones.
func TestWatchBounds(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour, MaxWatchers: 2}
			e := newEnv(t, kind, &envConfig{handlers: cfg})
			v := e.latest()
			held := []<-chan answer{
				send(e.request(http.MethodGet, "watch", watchQuery(v, 0), nil)),
				send(e.request(http.MethodGet, "watch", watchQuery(v, 0), nil)),
			}
			parked(t, e.s.Srv, 2)
			a := receive(t, send(e.request(http.MethodGet, "watch", watchQuery(v, 0), nil)))
			if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !bytes.Contains(a.body, []byte(`"busy"`)) {
				t.Fatalf("third watch: %d (Retry-After %q) %s, want 503 busy", a.status, a.header.Get("Retry-After"), a.body)
			}
			if err := e.s.Srv.Close(); err != nil {
				t.Fatal(err)
			}
			for _, ch := range held {
				a := receive(t, ch)
				if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
					t.Fatalf("held watch after Close: %d %s", a.status, a.body)
				}
			}
			status, raw, d := e.do(e.request(http.MethodGet, "watch", watchQuery(v, 0), nil))
			if status != http.StatusServiceUnavailable || d.Code != protocol.CodeBusy {
				t.Fatalf("watch after Close: %d %s", status, raw)
			}
			// The rest of the server works on.
			if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
				t.Fatalf("push after Close: %d %s", status, raw)
			}
		})
	}
}

// FuzzWatchParams fuzzes the parameters of GET /watch: ParseWatch accepts
// what Values gives back unchanged, refuses the rest as bad_request, and
// the handler answers 200 or 400.
func FuzzWatchParams(f *testing.F) {
	short := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Millisecond}
	e := newEnv(f, dbtest.KindSQLite, &envConfig{handlers: short})
	for _, s := range []string{
		"after=0", "after=1&wait_ms=10", "after=0&wait_ms=0", "after=-1", "after=x", "after=1e3", "after=9223372036854775808",
		"after=0&wait_ms=3600000", "after=0&wait_ms=3600001", "after=0&wait_ms=-1", "", "wait_ms=1", "after=0&after=0",
		"after=0&x=1", "%zz", "after=+1", "after=0x10", "after=%201",
		"after=1&after_token=4IQMNDTC2ZQYJCO2PH7OGQ2PFB", "after=1&after_token=", "after=1&after_token=" + strings.Repeat("A", 65),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if v, err := url.ParseQuery(raw); err == nil {
			req, err := protocol.ParseWatch(v)
			if err == nil {
				if req.After < 0 || req.Wait < 0 || req.Wait > protocol.MaxWatchWait {
					t.Fatalf("ParseWatch(%q) = %+v", raw, req)
				}
				again, err := protocol.ParseWatch(req.Values())
				if err != nil || !reflect.DeepEqual(req, again) {
					t.Fatalf("ParseWatch(%q) = %+v; after Values: %+v, %v", raw, req, again, err)
				}
			} else if dbsync.Code(err) != protocol.CodeBadRequest {
				t.Fatalf("ParseWatch(%q): %v (code %s)", raw, err, dbsync.Code(err))
			}
		}
		if !requestLine(raw) {
			return
		}
		e := e.with(t)
		status, body, _ := e.do(e.request(http.MethodGet, "watch", raw, nil))
		switch status {
		case http.StatusOK:
			var resp protocol.WatchResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("watch %q: 200 %q (%v)", raw, body, err)
			}
		case http.StatusBadRequest:
		default:
			t.Fatalf("watch %q: %d %s", raw, status, body)
		}
	})
}

// TestWatchPull: with pull=1, a new version is answered with the pull
// from after= itself, line for line what POST /pull answers the same
// request (no parents, no push asked about); no new version, the watch
// answer; a bad pull parameter, 400.
func TestWatchPull(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour}
			e := newEnv(t, kind, &envConfig{handlers: cfg})
			if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			v1 := e.latest()
			// w watches and pulls: the pushes are not its own.
			w := e.with(t)
			status, raw := w.register(`{"extra_data":{"token":"open sesame"}}`)
			var rr protocol.RegisterResponse
			if err := json.Unmarshal(raw, &rr); status != http.StatusOK || err != nil {
				t.Fatalf("register: %d %s", status, raw)
			}
			w.node = rr.Node
			pullQuery := func(after int64, wait time.Duration, chunk int) string {
				return (&protocol.WatchRequest{After: after, Wait: wait, Pull: true, ChunkSize: chunk}).Values().Encode()
			}
			// Held, then woken by a push: the answer is the pull.
			held := send(w.request(http.MethodGet, "watch", pullQuery(v1, time.Hour, 0), nil))
			parked(t, e.s.Srv, 1)
			if status, raw, _ := e.push(e.pushBody(2, "work")); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			woken := receive(t, held)
			cases := []struct {
				name  string
				got   answer
				after int64 // the pull the answer must be; -1: a watch answer
				chunk int
				watch protocol.WatchResponse
			}{
				{name: "woken", got: woken, after: v1},
				{name: "behind at once", got: receive(t, send(w.request(http.MethodGet, "watch", pullQuery(0, time.Hour, 0), nil))), after: 0},
				{name: "a chunk size", got: receive(t, send(w.request(http.MethodGet, "watch", pullQuery(0, time.Hour, 1), nil))), after: 0, chunk: 1},
				{name: "nothing new", got: receive(t, send(w.request(http.MethodGet, "watch", pullQuery(e.latest(), 10*time.Millisecond, 0), nil))),
					after: -1, watch: protocol.WatchResponse{LatestVersionID: e.latest()}},
			}
			for _, c := range cases {
				if c.after < 0 {
					if got := watchAnswer(t, c.got); got != c.watch {
						t.Fatalf("%s: %+v, want %+v", c.name, got, c.watch)
					}
					continue
				}
				if c.got.status != http.StatusOK || !strings.HasPrefix(c.got.header.Get("Content-Type"), "application/x-ndjson") {
					t.Fatalf("%s: %d %s %s, want a pull's stream", c.name, c.got.status, c.got.header.Get("Content-Type"), c.got.body)
				}
				body, err := json.Marshal(&protocol.PullRequest{LatestVersionID: &c.after, ChunkSize: c.chunk, Deleted: map[string][]string{}})
				if err != nil {
					t.Fatal(err)
				}
				want := receive(t, send(w.request(http.MethodPost, "pull", "", body)))
				if want.status != http.StatusOK || string(c.got.body) != string(want.body) {
					t.Fatalf("%s: answered\n%s\nwant what /pull answers (%d)\n%s", c.name, c.got.body, want.status, want.body)
				}
				if !strings.Contains(string(c.got.body), `"type":"end"`) || strings.Count(string(c.got.body), `"type":"chunk"`) == 0 {
					t.Fatalf("%s: %s is not a whole pull with operations", c.name, c.got.body)
				}
			}
			for _, q := range []string{"after=0&pull=2", "after=0&chunk_size=5", "after=0&pull=1&chunk_size=0"} {
				if status, raw, d := w.do(w.request(http.MethodGet, "watch", q, nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("%s: %d %s, want 400", q, status, raw)
				}
			}
		})
	}
}
