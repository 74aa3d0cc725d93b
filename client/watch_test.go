package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// hangGuard bounds a wait that only a bug makes long (a node never woken);
// it is not a measure of speed.
const hangGuard = 2 * time.Minute

// feedServer serves db over loopback HTTP with watch requests held up to
// an hour, so that only a wake answers them.
func feedServer(t *testing.T, db *bun.DB) (*server.Server, string) {
	t.Helper()
	srv, _ := synctest.NewHandler(t, db, testmodels.All(), nil)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour}))
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() }) // before hs.Close: held requests end
	return srv, hs.URL + "/sync"
}

// within waits for ch, failing after hangGuard.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("%s never happened", what)
	}
	var zero T
	return zero
}

// TestWatch: node B, watching, gets node A's write without polling (its
// watch requests are held up to an hour and its HTTP client has no
// timeout), on PostgreSQL through another server process than A's; it
// pushes its own writes when told of them; it retries while its server is
// closed, and stops on cancel.
func TestWatch(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var dbA, dbB *bun.DB
			if kind == dbtest.KindPostgres {
				u := dbtest.PostgresSchemaURL(t)
				for _, db := range []**bun.DB{&dbA, &dbB} {
					d, err := dbtest.OpenPostgres(u)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = d.Close() })
					*db = d
				}
			} else {
				dbA = dbtest.SQLite(t)
				dbB = dbA
			}
			if err := testmodels.CreateSchema(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			srvA, urlA := feedServer(t, dbA)
			srvB, urlB := srvA, urlA
			if dbB != dbA {
				srvB, urlB = feedServer(t, dbB)
			}

			a := synctest.NewClient(t, nil, "a", &client.Config{URL: urlA})
			pulled := make(chan struct{}, 1)
			pushed := make(chan struct{}, 1)
			refused := make(chan error, 1)
			events := make(chan dbsync.Event, 100)
			b := synctest.NewClient(t, nil, "b", &client.Config{URL: urlB, HTTPClient: &http.Client{}, OnEvent: func(_ context.Context, e dbsync.Event) {
				signal := func(ch chan struct{}) {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
				switch {
				case e.Op == "pull" && e.Err == nil && e.Operations > 0:
					signal(pulled)
				case e.Op == "push" && e.Err == nil && e.Operations > 0:
					signal(pushed)
				case e.Op == "watch" && e.Err != nil:
					select {
					case refused <- e.Err:
					default:
					}
				}
				select {
				case events <- e:
				default:
				}
			}})

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			changed := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- b.Watch(wctx, &client.WatchOptions{Wait: time.Hour, Changed: changed, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
			}()
			waitWatching(t, srvB)

			reaches(t, a, b, pulled, "from a")

			// B's own write, signalled: pushed without waiting for a wake.
			waitWatching(t, srvB)
			insertList(t, b.DB, "from b")
			changed <- struct{}{}
			within(t, pushed, "B's push of its write")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if got := count(t, a.DB, "lists", "name = ?", "from b"); got != 1 {
				t.Fatalf("A holds %d lists from B", got)
			}

			// B's server closes: B's watch requests are refused (busy) and
			// retried after a pause, until B is cancelled.
			waitWatching(t, srvB)
			if err := srvB.Close(); err != nil {
				t.Fatal(err)
			}
			if err := within(t, refused, "a refused watch request"); !errors.Is(err, dbsync.ErrBusy) {
				t.Fatalf("watch after Close: %v, want busy", err)
			}
			cancel()
			if err := within(t, done, "Watch's return"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v, want context.Canceled", err)
			}
		})
	}
}

// reaches writes a list on a and syncs it; b, watching, must pull it
// (pulled receives b's pulls that brought operations).
func reaches(t *testing.T, a, b *synctest.Client, pulled <-chan struct{}, name string) {
	t.Helper()
	insertList(t, a.DB, name)
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	within(t, pulled, "B's pull of A's write")
	if got := count(t, b.DB, "lists", "name = ?", name); got != 1 {
		t.Fatalf("B holds %d lists %q after its pull", got, name)
	}
}

// waitWatching waits until srv holds a watch request.
func waitWatching(t *testing.T, srv *server.Server) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for srv.Watching() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no watch request held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatchInProcess: the loop over the in-process transport
// (synctest.Transport, holding requests up to an hour): B gets A's write.
func TestWatchInProcess(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewLocalServer(t, kind, nil)
			tr := synctest.NewTransport(s.Srv)
			tr.WatchWait = time.Hour
			a := synctest.NewClient(t, s, "a", nil)
			pulled := make(chan struct{}, 1)
			var failed atomic.Int64 // watch events with an error
			b := synctest.NewClient(t, s, "b", &client.Config{Transport: tr, OnEvent: func(_ context.Context, e dbsync.Event) {
				if e.Op == "watch" && e.Err != nil {
					failed.Add(1)
				}
				if e.Op == "pull" && e.Err == nil && e.Operations > 0 {
					select {
					case pulled <- struct{}{}:
					default:
					}
				}
			}})
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- b.Watch(wctx, nil) }()
			waitWatching(t, s.Srv)
			reaches(t, a, b, pulled, "from a")
			cancel()
			if err := within(t, done, "Watch's return"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v", err)
			}
			// Stopping the watch is no failure.
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d watch events with an error", n)
			}
		})
	}
}

// TestWatchFatal: Watch returns at once the errors no retry fixes.
func TestWatchFatal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
	db := dbtest.SQLite(t)
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, db, reg, &client.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Watch(ctx, nil); !errors.Is(err, dbsync.ErrNotRegistered) {
		t.Fatalf("Watch of an unregistered node: %v", err)
	}
}

// TestWatchCarriedPull: a watching node gets each new version in the
// watch request's answer (pull=1) and applies it as a pull of its own
// would: no POST /pull is made, its rows are the server's and it holds
// every version, without a gap. When the node changed in between (a
// deleted list: its pull must name it), the carried answer is not used:
// the node pulls on its own, and still converges.
func TestWatchCarriedPull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind string
		old  bool // the server predates pull=1: a 400 the first time, then plain watch requests
	}{{kind: dbtest.KindSQLite}, {kind: dbtest.KindPostgres}, {kind: dbtest.KindSQLite, old: true}} {
		name := tc.kind
		if tc.old {
			name += "/old server"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, tc.kind)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			srv, _ := synctest.NewHandler(t, db, testmodels.All(), nil)
			var pulls, refused atomic.Int64
			r := chi.NewRouter()
			r.Use(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/pull") {
						pulls.Add(1)
					}
					if tc.old && r.URL.Query().Has("pull") {
						refused.Add(1)
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusBadRequest)
						_, _ = w.Write([]byte(`{"error":{"code":"bad_request","message":"unknown parameter \"pull\""}}`))
						return
					}
					next.ServeHTTP(w, r)
				})
			})
			r.Mount("/sync", handlers.New(srv, &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour}))
			hs := httptest.NewServer(r)
			t.Cleanup(hs.Close)
			t.Cleanup(func() { _ = srv.Close() })
			url := hs.URL + "/sync"

			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			b := synctest.NewClient(t, nil, "b", &client.Config{URL: url, HTTPClient: &http.Client{}})
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- b.Watch(wctx, &client.WatchOptions{Wait: time.Hour, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
			}()

			rows := func(db bun.IDB) string {
				var out []string
				if err := db.NewRaw("SELECT name FROM lists ORDER BY name").Scan(ctx, &out); err != nil {
					t.Fatal(err)
				}
				return strings.Join(out, ",")
			}
			// settled waits until B holds the server's latest version and
			// has nothing to push.
			settled := func() {
				t.Helper()
				deadline := time.Now().Add(hangGuard)
				for {
					var latest, held, pending int64
					if err := db.NewRaw("SELECT COALESCE(MAX(version_id), 0) FROM sync_versions").Scan(ctx, &latest); err != nil {
						t.Fatal(err)
					}
					if err := b.DB.NewRaw("SELECT COALESCE(MAX(version_id), 0), (SELECT COUNT(*) FROM sync_operations WHERE version_id IS NULL) FROM sync_versions").Scan(ctx, &held, &pending); err != nil {
						t.Fatal(err)
					}
					if held == latest && pending == 0 && srv.Watching() == 1 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("B at version %d with %d operations to push, the server at %d", held, pending, latest)
					}
					time.Sleep(time.Millisecond)
				}
			}
			settled()
			steps := []struct {
				name     string
				before   func() // on B, before A's write
				carried  bool   // B's pull is the watch request's answer
				aWrite   string // a list A inserts
				aRenames string // renamed to, on A, of the list A inserted before
			}{
				{name: "an insert", aWrite: "l1", carried: true},
				{name: "another insert", aWrite: "l2", carried: true},
				{name: "an update", aRenames: "l2 again", carried: true},
				{name: "B deleted a list meanwhile", before: func() {
					if _, err := b.DB.NewDelete().Model((*testmodels.List)(nil)).Where("name = ?", "l1").Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}, aWrite: "l3"},
			}
			last := ""
			for _, st := range steps {
				before := pulls.Load()
				if st.before != nil {
					st.before()
				}
				switch {
				case st.aWrite != "":
					insertList(t, a.DB, st.aWrite)
					last = st.aWrite
				default:
					if _, err := a.DB.NewUpdate().Model((*testmodels.List)(nil)).Set("name = ?", st.aRenames).Where("name = ?", last).Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				settled()
				if got := pulls.Load() - before; (got == 0) != (st.carried && !tc.old) {
					t.Fatalf("%s: %d POST /pull requests, want carried %v", st.name, got, st.carried)
				}
				if got, want := rows(b.DB), rows(db); got != want {
					t.Fatalf("%s: B holds lists %q, the server %q", st.name, got, want)
				}
				var versions, latest int64
				if err := b.DB.NewRaw("SELECT COUNT(*), COALESCE(MAX(version_id), 0) FROM sync_versions").Scan(ctx, &versions, &latest); err != nil {
					t.Fatal(err)
				}
				if versions != latest {
					t.Fatalf("%s: B holds %d versions up to %d: a gap", st.name, versions, latest)
				}
			}
			if n := refused.Load(); tc.old && n != 1 {
				t.Fatalf("%d watch requests with pull=1 refused, want 1 (then none asked)", n)
			}
			cancel()
			if err := within(t, done, "Watch's return"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v", err)
			}
		})
	}
}

// TestWatchRefusedPushStillPulls: a watching node whose push the server
// refuses until the application settles it (bob takes over a project ann
// shares with him: out of his scope) keeps receiving the other nodes'
// versions while that change waits (README "Live change feed": Watch
// goes on). It used to retry its Sync, whose push was refused before it
// pulled anything: the node received nothing until DiscardPending.
func TestWatchRefusedPushStillPulls(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "scoped", testmodels.CreateScoped, testmodels.Scoped()),
				testmodels.CreateScoped, testmodels.Scoped(), &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()})
			node := func(user string, cfg *client.Config) *synctest.Client {
				return synctest.NewClientAs(t, s, user, "Bearer "+user, synctest.ClientSQLite(t, "scoped", testmodels.CreateScoped, testmodels.Scoped()),
					testmodels.CreateScoped, testmodels.Scoped(), cfg)
			}
			ann := node("ann", nil)
			refused := make(chan struct{}, 1)
			pulled := make(chan struct{}, 1)
			bob := node("bob", &client.Config{OnEvent: func(_ context.Context, e dbsync.Event) {
				ch := pulled
				if se := (*dbsync.ScopeError)(nil); e.Op == "push" && errors.As(e.Err, &se) {
					ch = refused
				} else if e.Op != "pull" || e.Err != nil || e.Operations == 0 {
					return
				}
				select {
				case ch <- struct{}{}:
				default:
				}
			}})
			exec(t, ann.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared')")
			exec(t, ann.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
			for _, c := range []*synctest.Client{ann, bob} {
				if _, err := c.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			<-pulled // bob's Sync brought the project
			exec(t, bob.DB, "UPDATE projects SET owner_id = 'bob' WHERE id = 1")

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- bob.Watch(wctx, &client.WatchOptions{Wait: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
			}()
			within(t, refused, "the refusal of bob's push")
			exec(t, ann.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'from ann')")
			if _, err := ann.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			within(t, pulled, "bob's pull of ann's task while his change waits")
			if got := count(t, bob.DB, "tasks", "title = ?", "from ann"); got != 1 {
				t.Fatalf("bob holds %d tasks from ann", got)
			}
			if ops, err := bob.Pending(ctx); err != nil || len(ops) != 1 {
				t.Fatalf("bob's pending operations: %v, %v; want his refused update", ops, err)
			}
			cancel()
			if err := within(t, done, "Watch's return"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v, want context.Canceled", err)
			}
		})
	}
}

// TestWatchServerLostVersions: a watching node whose server loses
// versions the node holds (its database restored from a backup, or failed
// over to a standby that lacked them) learns it from the next watch
// answer, below its version, and Watch returns dbsync.ErrRepairNeeded.
// It used to watch on: once the server's new versions passed its own, it
// pulled from its version, never getting those numbered at or below it.
func TestWatchServerLostVersions(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewLocalServer(t, kind, &server.Config{WatchPoll: 20 * time.Millisecond})
			t.Cleanup(func() { _ = s.Srv.Close() })
			tr := synctest.NewTransport(s.Srv)
			tr.WatchWait = 200 * time.Millisecond
			b := synctest.NewClient(t, s, "b", &client.Config{Transport: tr})
			for _, name := range []string{"one", "two", "three"} {
				insertList(t, b.DB, name)
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var latest int64
			if err := s.DB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &latest); err != nil || latest != 3 {
				t.Fatalf("server's latest version %d (%v), want 3", latest, err)
			}
			done := make(chan error, 1)
			go func() { done <- b.Watch(ctx, nil) }()
			waitWatching(t, s.Srv)
			// The server's database as a backup taken at version 1 has it.
			for _, q := range []string{"DELETE FROM sync_operations WHERE version_id > 1", "DELETE FROM sync_pushes WHERE version_id > 1",
				"DELETE FROM sync_versions WHERE version_id > 1"} {
				if _, err := s.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if err := within(t, done, "Watch's return"); !errors.Is(err, dbsync.ErrRepairNeeded) {
				t.Fatalf("Watch returned %v, want ErrRepairNeeded", err)
			}
		})
	}
}
