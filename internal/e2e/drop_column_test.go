package e2e_test

import (
	"context"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
)

// A release drops a column (release 2's note and priority gone again),
// the migration run through oplog.Migrate with the new release's
// registry, as README "Schema changes" says. On SQLite, ALTER TABLE …
// DROP COLUMN fails: the capture trigger of updates names every column;
// the table is rebuilt instead. The node then syncs.
func TestDropColumnMigration(t *testing.T) {
	t.Parallel()
	v2 := []any{(*h4Item2)(nil)}
	create := func(ctx context.Context, db bun.IDB) error {
		if err := h4Create(ctx, db); err != nil {
			return err
		}
		for _, q := range []string{"ALTER TABLE h4_items ADD COLUMN note TEXT", "ALTER TABLE h4_items ADD COLUMN prio BIGINT NOT NULL DEFAULT 0"} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	drop := func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "ALTER TABLE h4_items DROP COLUMN note")
		if err == nil {
			_, err = tx.ExecContext(ctx, "ALTER TABLE h4_items DROP COLUMN prio")
		}
		return err
	}
	rebuild := func(ctx context.Context, tx bun.Tx) error {
		return execEach(ctx, tx,
			"CREATE TABLE h4_items_new (id INTEGER PRIMARY KEY AUTOINCREMENT, title VARCHAR NOT NULL)",
			"INSERT INTO h4_items_new SELECT id, title FROM h4_items",
			"DROP TABLE h4_items",
			"ALTER TABLE h4_items_new RENAME TO h4_items")
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			migrate := func(db *bun.DB, client bool) {
				t.Helper()
				reg, err := dbsync.Track(db, h4V1...)
				if err != nil {
					t.Fatal(err)
				}
				opts := &oplog.InstallOptions{Client: client}
				_, err = oplog.Migrate(ctx, db, reg, opts, drop)
				if dialect.MustOf(db) == dialect.Postgres {
					if err != nil {
						t.Fatalf("DROP COLUMN on PostgreSQL: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), "trigger") {
					t.Fatalf("DROP COLUMN on SQLite: %v, want the capture trigger's refusal", err)
				}
				if _, err := oplog.Migrate(ctx, db, reg, opts, rebuild); err != nil {
					t.Fatalf("rebuild: %v", err)
				}
			}
			sdb := dbtest.Open(t, kind)
			srv2 := synctest.NewServerWith(t, sdb, create, v2, nil)
			dbA := dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv2, "a", dbA, create, v2, nil)
			lcExec(t, dbA, "INSERT INTO h4_items (id, title, note, prio) VALUES (1, 'one', 'n', 2)")
			h4Sync(t, "a", a.Client)
			srv2.Srv.Close()
			migrate(sdb, false)
			srv3 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, h4V1, nil)
			migrate(dbA, true)
			newA := h4Client(t, srv3.URL, dbA, h4V1...)
			lcExec(t, dbA, "UPDATE h4_items SET title = 'one-a' WHERE id = 1")
			h4Sync(t, "a", newA)
			var title string
			h4Row(t, sdb, "SELECT title FROM h4_items WHERE id = 1", &title)
			if title != "one-a" {
				t.Errorf("server item 1: %q, want one-a", title)
			}
		})
	}
}
