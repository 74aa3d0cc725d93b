package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestSchemaChangeBetweenChunks: the server migrates to release 2 (a
// defaulted NOT NULL column, a new table) and restarts while an old node's
// chunked push is half staged: the push commits under the node's view, its
// rows take the new column's default, and the node equals the server.
func TestSchemaChangeBetweenChunks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, createV1, modelsV1, nil)
			var cur atomic.Pointer[http.Handler]
			h := srv1.HTTP.Config.Handler
			cur.Store(&h)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*cur.Load()).ServeHTTP(w, r) }))
			t.Cleanup(front.Close)
			dbA := dbtest.Open(t, kind)
			if err := createV1(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			var chunks atomic.Int64
			var srv2reg *dbsync.Registry
			hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := http.DefaultTransport.RoundTrip(r)
				if err == nil && strings.HasSuffix(r.URL.Path, "/push-chunk") && resp.StatusCode == 200 && chunks.Add(1) == 1 {
					if err := migrateV2(ctx, serverDB); err != nil {
						t.Error(err)
					}
					srv2, h2 := synctest.NewHandler(t, serverDB, modelsV2, nil)
					srv2reg = srv2.Registry()
					cur.Store(&h2)
				}
				return resp, err
			})}
			reg, err := dbsync.Track(dbA, modelsV1...)
			if err != nil {
				t.Fatal(err)
			}
			a, err := client.New(ctx, dbA, reg, &client.Config{URL: front.URL + "/sync", HTTPClient: hc, PushChunkOperations: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Register(ctx, nil); err != nil {
				t.Fatal(err)
			}
			execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two'), ('three')")
			res, err := a.Sync(ctx)
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			if chunks.Load() < 3 || srv2reg == nil {
				t.Fatalf("%d chunks, %v", chunks.Load(), res)
			}
			var rows []string
			if err := serverDB.NewRaw("SELECT name || ':' || priority FROM projects ORDER BY id").Scan(ctx, &rows); err != nil {
				t.Fatal(err)
			}
			if strings.Join(rows, " ") != "one:0 two:0 three:0" {
				t.Fatalf("server rows %v", rows)
			}
			if d := synctest.Diff(synctest.Dump(t, serverDB, a.Registry()), synctest.Dump(t, dbA, a.Registry())); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}
