package dialect_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestCopy: Copy writes inside the transaction of ApplyTx on PostgreSQL
// (its rows are gone when that transaction rolls back), and declines
// everywhere else: on SQLite, in a transaction of RunInTx, and in another
// transaction begun with the context of ApplyTx.
func TestCopy(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, "CREATE TABLE copied (id BIGINT NOT NULL, name TEXT)"); err != nil {
			t.Fatal(err)
		}
		pg := dialect.MustOf(db) == dialect.Postgres
		rows := func() pgx.CopyFromSource {
			return pgx.CopyFromRows([][]any{{int64(1), "a"}, {int64(2), nil}})
		}
		count := func() int {
			t.Helper()
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM copied").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		errRollback := context.Canceled
		err := dialect.ApplyTx(ctx, db, func(ctx context.Context, tx bun.Tx) error {
			ok, err := dialect.Copy(ctx, tx, "copied", []string{"id", "name"}, rows())
			if err != nil || ok != pg {
				t.Errorf("Copy in ApplyTx: %v, %v; want %v", ok, err, pg)
			}
			if pg {
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM copied WHERE name IS NULL").Scan(&n); err != nil || n != 1 {
					t.Errorf("the transaction sees %d rows copied with a NULL name (%v), want 1", n, err)
				}
			}
			if dialect.CanCopy(ctx, db) {
				t.Error("CanCopy outside a transaction")
			}
			if !pg { // SQLite: one writer; a second transaction would wait
				return errRollback
			}
			return db.RunInTx(ctx, nil, func(ctx context.Context, other bun.Tx) error {
				if dialect.CanCopy(ctx, other) {
					t.Error("CanCopy in another transaction begun in ApplyTx")
				}
				return errRollback
			})
		})
		if err != errRollback {
			t.Fatalf("ApplyTx: %v", err)
		}
		// The context and transaction of an ApplyTx that has ended: no
		// COPY outside the transaction.
		var endedCtx context.Context
		var ended bun.Tx
		if err := dialect.ApplyTx(ctx, db, func(ctx context.Context, tx bun.Tx) error {
			endedCtx, ended = ctx, tx
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if ok, err := dialect.Copy(endedCtx, ended, "copied", []string{"id", "name"}, rows()); ok != pg || pg && err == nil {
			t.Errorf("Copy after ApplyTx: %v, %v", ok, err)
		}
		if n := count(); n != 0 {
			t.Fatalf("%d rows copied survive the rollback", n)
		}
		if err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if ok, err := dialect.Copy(ctx, tx, "copied", []string{"id", "name"}, rows()); ok || err != nil {
				t.Errorf("Copy in RunInTx: %v, %v; want false", ok, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}
