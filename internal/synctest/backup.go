package synctest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dialect"
)

// Backup copies every table of db (the application's and the
// node's own) aside and returns the function that restores them, as a
// restore from a backup would: the rows, the feed and the cursors as they
// were, nothing logged.
func Backup(t testing.TB, db *bun.DB) (restore func()) {
	t.Helper()
	pg := dialect.MustOf(db) == dialect.Postgres
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'bak_%' AND name NOT IN ('sync_state', 'sync_lww_capture')"
	if pg {
		q = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename NOT LIKE 'bak_%'"
	}
	var tables []string
	if err := db.NewRaw(q).Scan(context.Background(), &tables); err != nil {
		t.Fatal(err)
	}
	// Both modes' capture off (on SQLite, those whose switch the file
	// holds: the peer's comes with its tables).
	switches := []dialect.Switch{dialect.OplogSwitch}
	if pg || slices.Contains(tables, "sync_lww") {
		switches = append(switches, dialect.PeerSwitch)
	}
	for _, name := range tables {
		if _, err := db.ExecContext(context.Background(), fmt.Sprintf("CREATE TABLE bak_%s AS SELECT * FROM %s", name, name)); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		err := db.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
			if pg {
				// No triggers, no foreign key checks: the rows come back
				// as they were.
				if _, err := tx.ExecContext(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
					return err
				}
			} else if _, err := tx.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON"); err != nil {
				return err
			}
			for _, sw := range switches {
				if err := dialect.Capture(ctx, tx, sw, false); err != nil {
					return err
				}
			}
			for _, name := range tables {
				if _, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s", name)); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s SELECT * FROM bak_%s", name, name)); err != nil {
					return err
				}
			}
			for _, sw := range switches {
				if err := dialect.ResetCapture(ctx, tx, sw); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
	}
}
