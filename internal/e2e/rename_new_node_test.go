package e2e_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestRenamedTableNewNode: a release renames a tracked table on the
// server; a node that registers afterwards pulls its rows, on either
// server database.
func TestRenamedTableNewNode(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			sdb := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, sdb, h4Create, h4V1, nil)
			dbA := dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv1, "a", dbA, h4Create, h4V1, nil)
			lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')")
			h4Sync(t, "a", a.Client)
			srv1.Srv.Close()
			v2 := []any{(*h4Task)(nil)}
			h4ServerMigrate(t, sdb, v2, func(ctx context.Context, tx bun.Tx) error {
				_, err := tx.ExecContext(ctx, "ALTER TABLE h4_items RENAME TO h4_tasks")
				return err
			})
			srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, v2, nil)
			create := func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewCreateTable().Model((*h4Task)(nil)).IfNotExists().Exec(ctx)
				return err
			}
			dbC := dbtest.SQLite(t)
			c := synctest.NewClientWith(t, srv2, "c", dbC, create, v2, nil)
			h4Sync(t, "c", c.Client)
			var n int
			h4Row(t, dbC, "SELECT COUNT(*) FROM h4_tasks", &n)
			if n != 2 {
				t.Errorf("the new node holds %d rows of the renamed table, want 2", n)
			}
		})
	}
}
