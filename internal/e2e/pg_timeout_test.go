package e2e_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestDatabaseTimeoutIsBusy: a PostgreSQL server whose connections give
// up waiting (lock_timeout, statement_timeout: settings of its role or
// connection string) while an application's transaction holds a table
// answers a push 503 busy (dbsync.ErrBusy on the node: retry later),
// nothing written, and the push goes through once the table is free.
// Before, the answer was 500 internal, though SQLite's busy timeout was
// already 503.
func TestDatabaseTimeoutIsBusy(t *testing.T) {
	t.Parallel()
	for _, setting := range []string{"lock_timeout", "statement_timeout"} {
		t.Run(setting, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			base := dbtest.PostgresSchemaURL(t)
			db, err := dbtest.OpenPostgres(base + "&" + setting + "=1000")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			srv := synctest.NewServerWith(t, db, testmodels.CreateSchema, synctest.Models(), nil)
			a := synctest.NewClient(t, srv, "a", nil)
			run(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'held')")
			locker, err := dbtest.OpenPostgres(base)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = locker.Close() })
			tx, err := locker.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "LOCK TABLE lists IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			_, err = a.Push(ctx)
			if rerr := tx.Rollback(); rerr != nil {
				t.Fatal(rerr)
			}
			if !errors.Is(err, dbsync.ErrBusy) {
				t.Fatalf("push while the table is locked past %s: %v, want dbsync.ErrBusy", setting, err)
			}
			var n int
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM lists").Scan(ctx, &n); err != nil || n != 0 {
				t.Fatalf("the server holds %d lists after the refused push (%v), want none", n, err)
			}
			if _, err := a.Push(ctx); err != nil {
				t.Fatalf("push once the table is free: %v", err)
			}
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM lists").Scan(ctx, &n); err != nil || n != 1 {
				t.Fatalf("the server holds %d lists after the push (%v), want 1", n, err)
			}
		})
	}
}
