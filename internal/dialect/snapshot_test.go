package dialect_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestSnapshotSettings: on PostgreSQL a snapshot switches idle_in_transaction_session_timeout and JIT
// compilation off for itself, and the connection keeps its own settings
// after it.
func TestSnapshotSettings(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, kind)
			db.SetMaxOpenConns(1) // the snapshot's connection is the one read after it
			if kind == dbtest.KindPostgres {
				// Test connections run with JIT off (dbtest): this one's
				// own setting is on.
				if _, err := db.ExecContext(ctx, "SET jit = on"); err != nil {
					t.Fatal(err)
				}
			}
			err := dialect.Snapshot(ctx, db, func(ctx context.Context, tx bun.Tx) error {
				if kind != dbtest.KindPostgres {
					return nil
				}
				var idle, jit string
				if err := tx.QueryRowContext(ctx, "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('jit')").Scan(&idle, &jit); err != nil {
					return err
				}
				if idle != "0" || jit != "off" {
					t.Errorf("in a snapshot: idle_in_transaction_session_timeout %s, jit %s; want 0 and off", idle, jit)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if kind == dbtest.KindPostgres {
				var jit string
				if err := db.QueryRowContext(ctx, "SELECT current_setting('jit')").Scan(&jit); err != nil || jit != "on" {
					t.Errorf("after a snapshot: jit %s (%v), want the connection's own (on)", jit, err)
				}
			}
		})
	}
}
