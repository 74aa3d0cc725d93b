package dialect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestLockForMergeWaitsForRowLocks: a transaction holding a row lock on a
// tracked table (SELECT ... FOR UPDATE) may write that row next; the
// merge, which may write it too, must not take the tables under it (it
// then waited for the row holding every writer out, or deadlocked with
// the holder's next write): it waits, and gives up with ErrLogBusy, the
// session's lock_timeout kept.
func TestLockForMergeWaitsForRowLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Postgres(t)
	for _, q := range []string{"CREATE TABLE sync_operations (id int)", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1)"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	app, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Rollback()
	if _, err := app.ExecContext(ctx, "SELECT id FROM items WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = '1234ms'"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got string
	err = conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := dialect.LockForMerge(ctx, tx, []string{"items"}, 500*time.Millisecond)
		if serr := tx.QueryRowContext(ctx, "SHOW lock_timeout").Scan(&got); serr != nil {
			t.Errorf("after LockForMerge: %v", serr)
		}
		return err
	})
	if !errors.Is(err, dialect.ErrLogBusy) {
		t.Fatalf("LockForMerge under a row lock: %v, want ErrLogBusy", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("LockForMerge gave up after %s, its wait is 500ms", d)
	}
	if got != "1234ms" {
		t.Errorf("lock_timeout after LockForMerge is %q, the session had 1234ms", got)
	}
	// The application's transaction goes on meanwhile, and ends.
	if _, err := app.ExecContext(ctx, "UPDATE items SET id = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	err = conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return dialect.LockForMerge(ctx, tx, []string{"items"}, 500*time.Millisecond)
	})
	if err != nil {
		t.Fatalf("LockForMerge once the application's transaction ended: %v", err)
	}
}
