package e2e_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestTwoServersBehindBalancer: two server processes on one database (a
// PostgreSQL schema; a SQLite file, opened twice) behind a balancer that
// sends each request to the other one: a node registers on one and
// pushes on the other, its chunks and their commit land on both, and
// another node pulls from both. The push is applied once (one version,
// every row once, no chunk left staged), and both nodes hold the
// server's rows.
func TestTwoServersBehindBalancer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var open func() *bun.DB
			switch kind {
			case dbtest.KindSQLite:
				path := dbtest.SQLitePath(t)
				open = func() *bun.DB {
					db, err := dbtest.OpenSQLite(path)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = db.Close() })
					return db
				}
			default:
				u := dbtest.PostgresSchemaURL(t)
				open = func() *bun.DB {
					db, err := dbtest.OpenPostgres(u)
					if err != nil {
						t.Fatal(err)
					}
					db.SetMaxOpenConns(8)
					t.Cleanup(func() { _ = db.Close() })
					return db
				}
			}
			dbs := []*bun.DB{open(), open()}
			if err := testmodels.CreateSchema(ctx, dbs[0]); err != nil {
				t.Fatal(err)
			}
			var hosts []string
			for _, db := range dbs {
				_, h := synctest.NewHandler(t, db, testmodels.All(), nil)
				u, err := url.Parse(newLoopbackServer(t, h))
				if err != nil {
					t.Fatal(err)
				}
				hosts = append(hosts, u.Host)
			}
			var mu sync.Mutex
			next := 0
			served := map[string]map[string]bool{} // endpoint → hosts that served it
			lb := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				host := hosts[next%len(hosts)]
				next++
				ep := r.URL.Path[len("/sync/"):]
				if served[ep] == nil {
					served[ep] = map[string]bool{}
				}
				served[ep][host] = true
				mu.Unlock()
				r = r.Clone(r.Context())
				r.URL.Host, r.Host = host, host
				return http.DefaultTransport.RoundTrip(r)
			})}
			cfg := &client.Config{URL: "http://balancer/sync", HTTPClient: lb, PushChunkOperations: 3}
			a := synctest.NewClient(t, nil, "a", cfg)
			b := synctest.NewClient(t, nil, "b", cfg)
			relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('l')")
			relExec(t, a.DB, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20) INSERT INTO todos (list_id, title) SELECT (SELECT id FROM lists), 'todo ' || i FROM n")
			res, err := a.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Pushes) != 1 || res.Pushes[0].Operations != 21 {
				t.Fatalf("a: %v, want 21 operations pushed", res)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for _, ep := range []string{"register", "push-chunk", "pull"} {
				if len(served[ep]) != 2 {
					t.Fatalf("%s reached %d server(s), want both", ep, len(served[ep]))
				}
			}
			var versions, todos, distinct, staged int
			for q, v := range map[string]*int{
				"SELECT count(*) FROM sync_versions":      &versions,
				"SELECT count(*) FROM todos":              &todos,
				"SELECT count(DISTINCT title) FROM todos": &distinct,
				"SELECT count(*) FROM sync_push_chunks":   &staged,
			} {
				if err := dbs[1].NewRaw(q).Scan(ctx, v); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if versions != 1 || todos != 20 || distinct != 20 || staged != 0 {
				t.Fatalf("server: %d version(s), %d todos (%d titles), %d chunk(s) staged; want 1, 20, 20, 0", versions, todos, distinct, staged)
			}
			for _, c := range []*synctest.Client{a, b} {
				if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), synctest.Dump(t, dbs[0], c.Reg)); d != "" {
					t.Fatalf("%s and the server differ:\n%s", c.Name, d)
				}
			}
		})
	}
}
