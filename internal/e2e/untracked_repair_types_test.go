package e2e_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestRepairKeepsUntrackedJSONChild: on PostgreSQL, an untracked child
// table with a json column (a type without an equality operator) or an
// identity column GENERATED ALWAYS (an UPDATE can only set it to DEFAULT)
// made every repair fail in keepUntracked's restore.
func TestRepairKeepsUntrackedJSONChild(t *testing.T) {
	t.Parallel()
	mods := h2PushOnlyModels()
	schema := func(ctx context.Context, db bun.IDB) error {
		if err := h2CreatePushOnly(ctx, db); err != nil {
			return err
		}
		q := "CREATE TABLE IF NOT EXISTS h2_local_jtags (id bigint PRIMARY KEY, device_id bigint REFERENCES h2_devices (id) ON DELETE CASCADE, meta json, seq bigint GENERATED ALWAYS AS IDENTITY)"
		if db.Dialect().Name() != dialect.PG {
			q = "CREATE TABLE IF NOT EXISTS h2_local_jtags (id bigint PRIMARY KEY, device_id bigint REFERENCES h2_devices (id) ON DELETE CASCADE, meta text, seq bigint)"
		}
		_, err := db.ExecContext(ctx, q)
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, mods), h2CreatePushOnly, mods, nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "h2pojson", schema, mods), schema, mods, nil)
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1')")
			mustSync(t, a)
			lcExec(t, a.DB, `INSERT INTO h2_local_jtags (id, device_id, meta) VALUES (1, 1, '{"a":1}')`)
			if _, err := a.Repair(ctx, &client.RepairOptions{Force: true}); err != nil {
				t.Fatalf("repair: %v", err)
			}
			wantKeys(t, a, "h2_local_jtags", "1")
		})
	}
}
