package dialect_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestLockLogKeepsSessionLockTimeout: a session that set its own
// lock_timeout keeps it for the statements after LockLog in the same
// transaction. (Resetting it with SET LOCAL ... TO DEFAULT gave the
// configured default, here 0, no timeout.)
func TestLockLogKeepsSessionLockTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Postgres(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE sync_operations (id int)"); err != nil {
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
	var got string
	err = conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockLog(ctx, tx, 0); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SHOW lock_timeout").Scan(&got)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "1234ms" {
		t.Fatalf("lock_timeout after LockLog is %q, the session had 1234ms", got)
	}
}
