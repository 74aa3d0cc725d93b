package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

type untracked struct{ X int }

// TestUntrackedAndBadModels: a model or table the node does not track is
// dbsync.ErrUnknownTable for IsSynced, QueryAll and Query alike, and an
// IsSynced argument that is no row of a tracked model (a nil pointer, a
// slice) is dbsync.ErrBadRequest, not a panic.
func TestUntrackedAndBadModels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewTemplateLocalServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewTemplateClient(t, srv, "a", nil)
	if _, err := a.IsSynced(ctx, &untracked{}); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("IsSynced of an untracked model: %v, want dbsync.ErrUnknownTable", err)
	}
	if _, err := client.QueryAll[untracked](ctx, a.Client, nil); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("QueryAll of an untracked model: %v, want dbsync.ErrUnknownTable", err)
	}
	if _, err := a.Query(ctx, &protocol.QueryRequest{Table: "untracked"}); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("Query of an untracked table: %v, want dbsync.ErrUnknownTable", err)
	}
	for _, m := range []any{nil, (*testmodels.List)(nil), []*testmodels.List{{}}, new(*testmodels.List)} {
		ok, err := a.IsSynced(ctx, m)
		if ok || !errors.Is(err, dbsync.ErrBadRequest) {
			t.Fatalf("IsSynced(%#v): %v, %v; want dbsync.ErrBadRequest", m, ok, err)
		}
	}
	if ok, err := a.IsSynced(ctx, testmodels.List{ID: 1}); err != nil || !ok {
		t.Fatalf("IsSynced of a struct value: %v, %v", ok, err)
	}
}

// TestReleaseDropsTable: a node whose new release no longer tracks a
// table (todos) pushes only the operations of the tables it tracks:
// PushResult.Operations counts those sent, not the pending operations on
// todos, which leave the log unsent (README, "Schema changes"); client.New
// removed todos' capture, so a later write to todos is not logged. Sent
// whole and in chunks, to a SQLite and a PostgreSQL server.
func TestReleaseDropsTable(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunk := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/chunk%d", kind, chunk), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewTemplateLocalServer(t, kind, nil)
				a := synctest.NewTemplateClient(t, srv, "a", nil)
				exec := func(q string) {
					t.Helper()
					if _, err := a.DB.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				exec("INSERT INTO lists (name) VALUES ('l1')")
				exec("INSERT INTO todos (list_id, title, done) VALUES (1, 't1', false)")
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				// Written by release 1, then upgraded before a sync.
				exec("UPDATE todos SET title = 't2' WHERE id = 1")
				exec("INSERT INTO lists (name) VALUES ('l2')")
				exec("UPDATE lists SET name = 'l1b' WHERE id = 1")
				reg, err := dbsync.Track(a.DB, (*testmodels.List)(nil), (*testmodels.Note)(nil))
				if err != nil {
					t.Fatal(err)
				}
				r2, err := client.New(ctx, a.DB, reg, &client.Config{Transport: synctest.NewTransport(srv.Srv), PushChunkOperations: chunk})
				if err != nil {
					t.Fatal(err)
				}
				exec("UPDATE todos SET title = 't3' WHERE id = 1") // not captured any more
				res, err := r2.Push(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if res.Operations != 2 {
					t.Errorf("PushResult.Operations %d, want 2 (the lists' insert and update)", res.Operations)
				}
				var pending int
				if err := a.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM sync_operations").Scan(&pending); err != nil || pending != 0 {
					t.Fatalf("%d operations left in the log (%v)", pending, err)
				}
				exec("UPDATE todos SET title = 't4' WHERE id = 1")
				if err := a.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM sync_operations").Scan(&pending); err != nil || pending != 0 {
					t.Fatalf("a write to todos after the push logged %d operations (%v)", pending, err)
				}
				var title string
				if err := srv.DB.QueryRowContext(ctx, "SELECT title FROM todos WHERE id = 1").Scan(&title); err != nil || title != "t1" {
					t.Fatalf("the server's todo %q (%v), want t1", title, err)
				}
				var names []string
				if err := srv.DB.NewRaw("SELECT name FROM lists ORDER BY id").Scan(ctx, &names); err != nil || !slices.Equal(names, []string{"l1b", "l2"}) {
					t.Fatalf("the server's lists %q (%v)", names, err)
				}
			})
		}
	}
}

// TestReleaseDropsTableOnlyPending: a node whose pending operations are
// all on a table its new release no longer tracks sends none; the
// server answers such a push empty (no version), and the operations
// leave the log. Push and Sync failed on that answer, every time
// ("answered with version 1, not after its base 1"): the node could
// never sync again.
func TestReleaseDropsTableOnlyPending(t *testing.T) {
	t.Parallel()
	for _, chunk := range []int{0, 1} {
		t.Run(fmt.Sprintf("chunk%d", chunk), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateLocalServer(t, dbtest.KindSQLite, nil)
			a := synctest.NewTemplateClient(t, srv, "a", nil)
			l := insertList(t, a.DB, "l1")
			insertTodos(t, a.DB, l, "t", 2)
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			exec(t, a.DB, "UPDATE todos SET title = 'changed'")
			reg, err := dbsync.Track(a.DB, (*testmodels.List)(nil), (*testmodels.Note)(nil))
			if err != nil {
				t.Fatal(err)
			}
			r2, err := client.New(ctx, a.DB, reg, &client.Config{Transport: synctest.NewTransport(srv.Srv), PushChunkOperations: chunk})
			if err != nil {
				t.Fatal(err)
			}
			if res, err := r2.Push(ctx); err != nil || !res.Empty {
				t.Fatalf("push: %v, %v; want nothing pushed", res, err)
			}
			if n := count(t, a.DB, "sync_operations", ""); n != 0 {
				t.Fatalf("%d operations left in the log", n)
			}
			if n := count(t, a.DB, "sync_push_attempts", ""); n != 0 {
				t.Fatalf("%d push attempts left", n)
			}
			exec(t, a.DB, "INSERT INTO lists (name) VALUES ('l2')")
			if _, err := r2.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			if n := count(t, srv.DB, "lists", ""); n != 2 {
				t.Fatalf("the server holds %d lists, want 2", n)
			}
		})
	}
}
