package e2e_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestServerDatabaseDown: the PostgreSQL database of a server goes down
// (its connections reset, new ones refused, as in a restart or a
// failover). Every kind of request is answered 503 busy with Retry-After
// (dbsync.ErrBusy: retry later), not 500 internal, and writes nothing;
// once the database is back the same nodes push and pull as before, the
// push applied once. (PostgreSQL only: a SQLite server has no connection
// to lose.)
func TestServerDatabaseDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	out := dbtest.NewOutage(t, dbtest.PostgresSchemaURL(t))
	if err := testmodels.CreateSchema(ctx, out.DB); err != nil {
		t.Fatal(err)
	}
	_, h := synctest.NewHandler(t, out.DB, testmodels.All(), nil)
	hs := newLoopbackServer(t, h) + "/sync"
	a := synctest.NewClient(t, nil, "a", &client.Config{URL: hs})
	b := synctest.NewClient(t, nil, "b", &client.Config{URL: hs})
	fresh := unregisteredClient(t, hs)
	relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('l')")
	relExec(t, a.DB, "INSERT INTO todos (list_id, title) SELECT id, 'a todo' FROM lists")

	out.Down()
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"push", func() error { _, err := a.Push(ctx); return err }},
		{"pull", func() error { _, err := b.Pull(ctx); return err }},
		{"repair", func() error { _, err := b.Repair(ctx, nil); return err }},
		{"query", func() error { _, err := b.Query(ctx, &protocol.QueryRequest{Table: "lists"}); return err }},
		{"register", func() error { _, err := fresh.RegisterWith(ctx, nil); return err }},
	} {
		err := tc.run()
		if !errors.Is(err, dbsync.ErrBusy) || dbsync.RetryAfter(err) <= 0 {
			t.Errorf("%s with the database down: %v (Retry-After %v), want dbsync.ErrBusy with a Retry-After", tc.name, err, dbsync.RetryAfter(err))
		}
	}

	out.Up()
	if _, err := a.Push(ctx); err != nil {
		t.Fatalf("push with the database back: %v", err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatalf("pull with the database back: %v", err)
	}
	if _, err := fresh.RegisterWith(ctx, nil); err != nil {
		t.Fatalf("register with the database back: %v", err)
	}
	var versions, todos int
	scanCounts(t, out.DB, map[string]*int{
		"SELECT count(*) FROM sync_versions": &versions,
		"SELECT count(*) FROM todos":         &todos,
	})
	if versions != 1 || todos != 1 {
		t.Fatalf("server: %d version(s), %d todos; want 1, 1", versions, todos)
	}
	if d := synctest.Diff(synctest.Dump(t, b.DB, b.Reg), synctest.Dump(t, out.DB, b.Reg)); d != "" {
		t.Fatalf("node and server differ:\n%s", d)
	}
}
