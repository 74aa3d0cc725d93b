package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestServerConnectionsCut: every database connection of a server on
// PostgreSQL is cut (pg_terminate_backend) at a chosen point of a
// request: a push's record, its COMMIT; a chunked push between its
// chunks (the second one's staging), its commit's COMMIT; a pull and a
// repair while they stream; a query; a register. (PostgreSQL only: a
// SQLite server has no connection to cut.) The node gets dbsync.ErrBusy
// (503 with Retry-After, or the stream's error line; before, 500
// internal), nothing half-done: its retry (a few may meet connections
// the pool has not found dead yet) succeeds, the push is applied exactly
// once (one version, every row once, no chunk left staged), and the node
// holds the server's rows.
func TestServerConnectionsCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// nth matches the n-th statement holding s; after the first
	// statement holding s2 after one holding s1.
	nth := func(s string, n int) func() func(string) bool {
		return func() func(string) bool {
			seen := 0
			return func(q string) bool {
				if strings.Contains(q, s) {
					seen++
				}
				return seen == n
			}
		}
	}
	after := func(s1, s2 string) func() func(string) bool {
		return func() func(string) bool {
			seen := false
			return func(q string) bool {
				seen = seen || strings.Contains(q, s1)
				return seen && strings.Contains(q, s2)
			}
		}
	}
	const record, staging, rows = "INSERT INTO sync_pushes", "pg_advisory_xact_lock(hashtext(current_schema()) #", `"title"`
	for _, tc := range []struct {
		name  string
		chunk int                        // client.Config.PushChunkOperations (0: the default)
		at    func() func(q string) bool // the statement before which the server's connections are cut
		op    string                     // push, pull, repair, query or register
	}{
		{"push/record", 0, nth(record, 1), "push"},
		{"push/commit", 0, after(record, "COMMIT"), "push"},
		{"chunked/between-chunks", 500, nth(staging, 2), "push"},
		{"chunked/commit", 500, after(record, "COMMIT"), "push"},
		{"pull/streaming", 0, nth(rows, 3), "pull"},
		{"repair/streaming", 0, nth(rows, 3), "repair"},
		{"query", 0, nth(`"name"`, 1), "query"},
		{"register", 0, nth("sync_nodes", 1), "register"},
	} {
		// One at a time: each holds a dozen PostgreSQL connections.
		t.Run(tc.name, func(t *testing.T) {
			cut, hs, a, b := cutServer(t, tc.chunk, tc.op != "push")
			run := func() error {
				var err error
				switch tc.op {
				case "push":
					_, err = a.Push(ctx)
				case "pull":
					_, err = b.Pull(ctx)
				case "repair":
					_, err = b.Repair(ctx, nil)
				case "query":
					_, err = b.Query(ctx, &protocol.QueryRequest{Table: "lists"})
				case "register":
					_, err = unregisteredClient(t, hs).RegisterWith(ctx, nil)
				}
				return err
			}
			cut.CutAt(tc.at())
			err := run()
			if cut.Armed() {
				t.Fatalf("never cut (answer %v)", err)
			}
			if !errors.Is(err, dbsync.ErrBusy) {
				t.Fatalf("cut: %v, want dbsync.ErrBusy", err)
			}
			for range 10 {
				if err = run(); err == nil {
					break
				}
				if !errors.Is(err, dbsync.ErrBusy) {
					t.Fatalf("retry: %v, want success or dbsync.ErrBusy", err)
				}
			}
			if err != nil {
				t.Fatalf("retries: %v", err)
			}
			var versions, maxVersion, todos, distinct, staged int
			scanCounts(t, cut.DB, map[string]*int{
				"SELECT count(*) FROM sync_versions":                     &versions,
				"SELECT COALESCE(max(version_id), 0) FROM sync_versions": &maxVersion,
				"SELECT count(*) FROM todos":                             &todos,
				"SELECT count(DISTINCT title) FROM todos":                &distinct,
				"SELECT count(*) FROM sync_push_chunks":                  &staged,
			})
			if versions != 1 || maxVersion != 1 || todos != 2000 || distinct != 2000 || staged != 0 {
				t.Fatalf("server: %d version(s) up to %d, %d todos (%d titles), %d chunk(s) staged; want 1 up to 1, 2000, 2000, 0",
					versions, maxVersion, todos, distinct, staged)
			}
			if tc.op == "pull" || tc.op == "repair" {
				if d := synctest.Diff(synctest.Dump(t, b.DB, b.Reg), synctest.Dump(t, cut.DB, b.Reg)); d != "" {
					t.Fatalf("node and server differ:\n%s", d)
				}
			}
		})
	}
}

// scanCounts scans each query's one integer into its variable.
func scanCounts(t *testing.T, db *bun.DB, counts map[string]*int) {
	t.Helper()
	for q, v := range counts {
		if err := db.NewRaw(q).Scan(context.Background(), v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// unregisteredClient returns a client of the server at u (its handlers'
// base URL) on a fresh SQLite file, not registered.
func unregisteredClient(t *testing.T, u string) *client.Client {
	t.Helper()
	db := synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, synctest.Models())
	reg, err := dbsync.Track(db, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(context.Background(), db, reg, &client.Config{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFirstRequestAfterConnectionsCut: every database connection of a
// server on PostgreSQL is cut between two requests (PostgreSQL restarted,
// a proxy dropping them): the server's pool still holds them, and no
// check finds them dead before a statement is sent on them (the driver
// pings a connection only when it was idle for a second). The very next
// request of each kind succeeds: the server tries its first statements
// again on another connection, nothing having run. Before, it was
// answered 500 internal (a retry succeeded).
func TestFirstRequestAfterConnectionsCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		chunk int // client.Config.PushChunkOperations (0: the default)
		op    string
	}{
		{"push", 0, "push"},
		{"chunked", 500, "push"},
		{"pull", 0, "pull"},
		{"repair", 0, "repair"},
		{"query", 0, "query"},
		{"register", 0, "register"},
	} {
		// One at a time: each holds a dozen PostgreSQL connections.
		t.Run(tc.name, func(t *testing.T) {
			cut, hs, a, b := cutServer(t, tc.chunk, tc.op != "push")
			fresh := unregisteredClient(t, hs)
			_, err := b.Pull(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The pool holds connections used just now, which the driver
			// does not ping before their next statement (it pings one idle
			// for a second): the node's pull may have taken longer.
			if _, err := b.Query(ctx, &protocol.QueryRequest{Table: "lists"}); err != nil {
				t.Fatal(err)
			}
			if err := cut.CutNow(ctx); err != nil {
				t.Fatal(err)
			}
			switch tc.op {
			case "push":
				_, err = a.Push(ctx)
			case "pull":
				_, err = b.Pull(ctx)
			case "repair":
				_, err = b.Repair(ctx, nil)
			case "query":
				_, err = b.Query(ctx, &protocol.QueryRequest{Table: "lists"})
			case "register":
				_, err = fresh.RegisterWith(ctx, nil)
			}
			if err != nil {
				t.Fatalf("%s after the connections were cut: %v", tc.op, err)
			}
			var versions, todos int
			scanCounts(t, cut.DB, map[string]*int{
				"SELECT count(*) FROM sync_versions": &versions,
				"SELECT count(*) FROM todos":         &todos,
			})
			if versions != 1 || todos != 2000 {
				t.Fatalf("server: %d version(s), %d todos; want 1, 2000", versions, todos)
			}
		})
	}
}

// cutServer starts, for a test cutting its PostgreSQL connections, a
// server on a dbtest.Cutter's database (pull answers of many lines) and
// two nodes of it over loopback HTTP: a holding 2,001 rows not pushed
// (pushed when pushed), and b. It returns the cutter and the handlers' URL
// too.
func cutServer(t *testing.T, chunk int, pushed bool) (*dbtest.Cutter, string, *synctest.Client, *synctest.Client) {
	t.Helper()
	ctx := context.Background()
	cut := dbtest.NewCutter(t, dbtest.PostgresSchemaURL(t))
	if err := testmodels.CreateSchema(ctx, cut.DB); err != nil {
		t.Fatal(err)
	}
	_, h := synctest.NewHandler(t, cut.DB, testmodels.All(), &server.Config{ChunkSize: 50})
	hs := newLoopbackServer(t, h) + "/sync"
	a := synctest.NewClient(t, nil, "a", &client.Config{URL: hs, PushChunkOperations: chunk})
	b := synctest.NewClient(t, nil, "b", &client.Config{URL: hs})
	relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('l')")
	relExec(t, a.DB, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO todos (list_id, title) SELECT (SELECT id FROM lists), 'todo number ' || i FROM n")
	if pushed {
		if _, err := a.Push(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return cut, hs, a, b
}
