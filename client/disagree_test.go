package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// A pull that would leave the node's rows referencing missing ones (the
// server deleted a child without logging it, then its parent) fails,
// applies nothing, and says what to do: Repair.
func TestPullDisagreementSaysRepair(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateLocalServer(t, kind, nil)
			a := synctest.NewTemplateClient(t, srv, "a", nil)
			exec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'home')")
			exec(t, a.DB, "INSERT INTO todos (id, list_id, title, done) VALUES (1, 1, 'milk', false)")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			// Behind dbsync's back: the child goes unlogged.
			if err := srv.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "DELETE FROM todos WHERE id = 1"); err != nil {
					return err
				}
				return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
			}); err != nil {
				t.Fatal(err)
			}
			exec(t, srv.DB, "DELETE FROM lists WHERE id = 1")
			if _, err := srv.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := a.Pull(ctx)
			if err == nil || !strings.Contains(err.Error(), "Repair") {
				t.Fatalf("pull: %v, want an error that says Repair", err)
			}
			// A failed Sync tells the version the node holds.
			if res, err := a.Sync(ctx); err == nil || res == nil || res.VersionID != 1 {
				t.Fatalf("sync: %+v, %v; want an error and version 1", res, err)
			}
			if n := count(t, a.DB, "lists", ""); n != 1 {
				t.Fatalf("the failed pull left %d lists, want 1", n)
			}
			if _, err := a.Repair(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if n := count(t, a.DB, "todos", ""); n != 0 {
				t.Fatalf("after a repair: %d todos, want 0", n)
			}
		})
	}
}

// TestDeleteWhilePulling: the application deletes lists after the node
// asked for a pull, while another node added a todo to one of them. The
// request did not name the delete, so the answer lacks the list the merge
// restores (D2): the pull failed with a foreign key violation telling to
// Repair. It now asks again. Deletes of lists the answer does not need
// (one at each request) do not fail it.
func TestDeleteWhilePulling(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, related := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/related=%v", kind, related), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
				tr := &hookTransport{Transport: synctest.NewTransport(srv.Srv)}
				db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
				a := synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), &client.Config{Transport: tr})
				b := synctest.NewClient(t, srv, "b", nil)
				l := insertList(t, a.DB, "home")
				insertTodos(t, a.DB, l, "t", 2)
				var spare []int64
				for i := range 4 {
					spare = append(spare, insertList(t, a.DB, fmt.Sprintf("spare%d", i)))
				}
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				insertTodos(t, b.DB, l, "b", 1)
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if related {
					tr.onPull = func() {
						tr.onPull = nil
						exec(t, a.DB, "DELETE FROM lists WHERE id = ?", l)
					}
				} else {
					tr.onPull = func() {
						if len(spare) > 0 {
							exec(t, a.DB, "DELETE FROM lists WHERE id = ?", spare[0])
							spare = spare[1:]
						}
					}
				}
				if _, err := a.Pull(ctx); err != nil {
					t.Fatalf("pull with lists deleted after the request: %v", err)
				}
				tr.onPull = nil
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				converged(t, srv, a, b)
			})
		}
	}
}

// TestDeleteWhilePullingGivesUp: the application deletes, at each of a
// pull's requests, a list the answer needs and the request did not name:
// the pull asks again a few times, then fails as a pull the node's rows
// disagree with does, saying what to do (Repair) and wrapping the same
// error.
func TestDeleteWhilePullingGivesUp(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
			tr := &hookTransport{Transport: synctest.NewTransport(srv.Srv)}
			db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
			a := synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), &client.Config{Transport: tr})
			b := synctest.NewClient(t, srv, "b", nil)
			var lists []int64
			for i := range 6 {
				lists = append(lists, insertList(t, a.DB, fmt.Sprintf("list%d", i)))
			}
			for _, c := range []*synctest.Client{a, b} {
				if _, err := c.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range lists {
				insertTodos(t, b.DB, l, "b", 1)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			requests := 0
			tr.onPull = func() {
				exec(t, a.DB, "DELETE FROM lists WHERE id = ?", lists[requests])
				requests++
			}
			_, err := a.Pull(ctx)
			if !errors.Is(err, dbsync.ErrForeignKey) || !strings.Contains(err.Error(), "Repair") {
				t.Fatalf("pull: %v, want the foreign key error, saying Repair", err)
			}
			if requests < 2 {
				t.Fatalf("%d pull requests, want the pull asked again", requests)
			}
			// Once the application stops deleting, a pull names every
			// delete: it goes through.
			tr.onPull = nil
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("pull once the deletes stopped: %v", err)
			}
		})
	}
}

// TestForeignKeyErrorIsExported: a pull, a repair and a push refused
// because rows would reference missing ones are dbsync.ErrForeignKey to the
// application, over HTTP, on every pair of server and node databases (on
// a PostgreSQL node the pull's and repair's refusal can be the database's
// own, at commit). The push's refusal is a push rejection too (409
// foreign_key), which the node gives up as before.
func TestForeignKeyErrorIsExported(t *testing.T) {
	t.Parallel()
	// unlogged runs query on the server's database without logging it:
	// rows changed behind dbsync's back.
	unlogged := func(t *testing.T, srv *synctest.Server, query string) {
		t.Helper()
		if err := srv.DB.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
			if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, query); err != nil {
				return err
			}
			return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, serverKind := range dbtest.Kinds {
		for _, nodeKind := range dbtest.Kinds {
			t.Run(serverKind+"/"+nodeKind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				newNode := func(srv *synctest.Server) *synctest.Client {
					db := synctest.ClientDB(t, nodeKind, "testmodels", testmodels.CreateSchema, synctest.Models())
					return synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), nil)
				}

				// Pull and repair: the server drops a todo unlogged,
				// then its list, logged.
				srv := synctest.NewServer(t, serverKind, nil)
				a := newNode(srv)
				l := insertList(t, a.DB, "home")
				insertTodos(t, a.DB, l, "t", 1)
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				unlogged(t, srv, "DELETE FROM todos")
				exec(t, srv.DB, "DELETE FROM lists")
				if _, err := srv.Srv.Seal(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Pull(ctx); !errors.Is(err, dbsync.ErrForeignKey) {
					t.Fatalf("pull: %v, want dbsync.ErrForeignKey", err)
				}

				// Push: the node adds a todo to a list the server dropped
				// unlogged.
				srv = synctest.NewServer(t, serverKind, nil)
				a = newNode(srv)
				l = insertList(t, a.DB, "work")
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				unlogged(t, srv, "DELETE FROM lists")
				insertTodos(t, a.DB, l, "t", 1)
				_, err := a.Push(ctx)
				var se *dbsync.ServerError
				if !errors.Is(err, dbsync.ErrForeignKey) || !errors.Is(err, dbsync.ErrPushRejected) || !errors.As(err, &se) ||
					se.Status != http.StatusConflict || se.Code != protocol.CodeForeignKey {
					t.Fatalf("push: %v, want a 409 %s that is dbsync.ErrForeignKey and dbsync.ErrPushRejected", err, protocol.CodeForeignKey)
				}
				if n := count(t, srv.DB, "todos", ""); n != 0 {
					t.Fatalf("the refused push left %d todos on the server", n)
				}
			})
		}
	}
}
