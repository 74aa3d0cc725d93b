package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestUnansweredPushRowDeleted: a row of a push whose answer never came is
// deleted before the push is resent. The server refuses an insert without
// its row, so the node does not resend: it pulls (which settles the push,
// applied or not) and pushes what it holds now. Whether the first copy
// reached the server or not, the row ends deleted everywhere.
func TestUnansweredPushRowDeleted(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, mode := range []string{"applied", "not applied"} {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewTemplateServer(t, kind, nil)
				tr := &transport{}
				a := synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client()})
				home := insertList(t, a.DB, "home")
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				gone := insertList(t, a.DB, "gone")
				insertTodos(t, a.DB, home, "kept", 1)
				if mode == "applied" {
					tr.setHook(loseReply("push"))
				} else {
					tr.setHook(failBefore("push"))
				}
				if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("push without an answer: %v, want ErrNetwork", err)
				}
				tr.setHook(nil)
				exec(t, a.DB, "DELETE FROM lists WHERE id = ?", gone)
				if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrPullNeeded) {
					t.Fatalf("resend without the deleted row: %v, want ErrPullNeeded", err)
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("sync: %v", err)
				}
				ds := converged(t, srv, a)
				if len(ds["lists"]) != 1 || len(ds["todos"]) != 1 {
					t.Fatalf("server holds %v, want home and its todo", ds)
				}
				if n := count(t, a.DB, "sync_operations", "version_id IS NULL"); n != 0 {
					t.Fatalf("node still has %d pending operations", n)
				}
			})
		}
	}
}

// TestInvalidTextLocalRow: a local row holding text that is not valid UTF-8
// (SQLite stores what it is given), or a value its field cannot hold,
// cannot be sent: Push and Sync fail with a *dbsync.ValueError naming
// table, key and column, and nothing is sent.
// The application rewrites the row; the next Sync sends it with the rest.
// PostgreSQL refuses such text itself: no node on it can hold it.
func TestInvalidTextLocalRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, testmodels.All()), testmodels.CreateSchema, testmodels.All(), nil)
			home := insertList(t, a.DB, "home")
			insertTodos(t, a.DB, home, "t", 2)
			// Through database/sql with bound parameters: bun would replace
			// the bad byte with U+FFFD while it formats the query.
			q := "UPDATE lists SET name = ? WHERE id = ?"
			if kind == dbtest.KindPostgres {
				q = "UPDATE lists SET name = $1 WHERE id = $2"
			}
			_, err := a.DB.DB.ExecContext(ctx, q, "caf\xe9", home)
			if kind == dbtest.KindPostgres {
				if err == nil {
					t.Fatal("PostgreSQL stored text that is not valid UTF-8")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				_, err := a.Sync(ctx)
				var ve *dbsync.ValueError
				if !errors.As(err, &ve) || ve.Table != "lists" || ve.Key != fmt.Sprint(home) || ve.Column != "name" {
					t.Fatalf("sync %d: %v, want a *dbsync.ValueError naming lists %d name", i, err, home)
				}
			}
			if n := count(t, srv.DB, "sync_versions", ""); n != 0 {
				t.Fatalf("the server has %d versions, want none", n)
			}
			exec(t, a.DB, "UPDATE lists SET name = ? WHERE id = ?", "café", home)
			// A value the field cannot hold, written by SQL (SQLite
			// stores 'lots' in a BOOLEAN column): named too. It read
			// "load todos.done: ..." (no row, no *dbsync.ValueError).
			var todo int64
			if err := a.DB.QueryRowContext(ctx, "SELECT min(id) FROM todos").Scan(&todo); err != nil {
				t.Fatal(err)
			}
			exec(t, a.DB, "UPDATE todos SET done = 'lots' WHERE id = ?", todo)
			_, err = a.Sync(ctx)
			if ve := (*dbsync.ValueError)(nil); !errors.As(err, &ve) || ve.Table != "todos" || ve.Key != fmt.Sprint(todo) || ve.Column != "done" {
				t.Fatalf("sync: %v, want a *dbsync.ValueError naming todos %d done", err, todo)
			}
			exec(t, a.DB, "UPDATE todos SET done = ? WHERE id = ?", false, todo)
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("sync after the fix: %v", err)
			}
			ds := converged(t, srv, a)
			if len(ds["lists"]) != 1 || len(ds["todos"]) != 2 {
				t.Fatalf("server holds %v", ds)
			}
		})
	}
}
