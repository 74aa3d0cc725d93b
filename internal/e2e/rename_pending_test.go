package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
)

// Release 2 renames items.title to items.name.
type h4ItemR struct {
	bun.BaseModel `bun:"table:h4_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

// Release 2 renames the table h4_items to h4_tasks.
type h4Task struct {
	bun.BaseModel `bun:"table:h4_tasks"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
}

// A release that renames a column or a table, every node upgrading with
// the server (README "Schema changes", "Other changes"). A node offline
// with writes when the server migrates is refused until it upgrades, and
// its upgrade loses them without an error: its update of the renamed
// column is overwritten by the backfill (the column is new to it, E3);
// those of the renamed table are logged under the old name, which the new
// release does not push, and its insert stays on the node alone. A node
// that syncs before the server migrates keeps them: the procedure the
// README gives.
func TestRenameWithPendingWrites(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		migrate string
		models  []any
		read    string
		lost    map[int]string // the server's rows after the offline node's upgrade
	}{
		{"column", "ALTER TABLE h4_items RENAME COLUMN title TO name", []any{(*h4ItemR)(nil)}, "SELECT name FROM h4_items WHERE id = %d",
			map[int]string{1: "one", 3: "three-a"}},
		{"table", "ALTER TABLE h4_items RENAME TO h4_tasks", []any{(*h4Task)(nil)}, "SELECT title FROM h4_tasks WHERE id = %d",
			map[int]string{1: "one", 3: ""}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			for _, first := range []bool{false, true} {
				name := kind + "/" + tc.name + "/offline"
				if first {
					name = kind + "/" + tc.name + "/synced first"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					sdb := dbtest.Open(t, kind)
					srv1 := synctest.NewServerWith(t, sdb, h4Create, h4V1, nil)
					dbA := dbtest.SQLite(t)
					a := synctest.NewClientWith(t, srv1, "a", dbA, h4Create, h4V1, nil)
					lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')")
					h4Sync(t, "a", a.Client)
					lcExec(t, dbA, "UPDATE h4_items SET title = 'one-a' WHERE id = 1", "INSERT INTO h4_items (id, title) VALUES (3, 'three-a')")
					if first {
						h4Sync(t, "a", a.Client)
					}
					srv1.Srv.Close()
					// The new release's registry: Migrate with the old one
					// refuses, its table or column gone.
					mig := func(ctx context.Context, tx bun.Tx) error { _, err := tx.ExecContext(ctx, tc.migrate); return err }
					h4ServerMigrate(t, sdb, tc.models, mig)
					srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, tc.models, nil)
					oldA := h4Client(t, srv2.URL, dbA, h4V1...)
					var se *dbsync.SchemaError
					if _, err := oldA.Sync(ctx); !errors.As(err, &se) {
						t.Fatalf("old A sync: %v, want a SchemaError", err)
					}
					if err := oldA.Migrate(ctx, mig); !errors.Is(err, oplog.ErrColumnMissing) && !errors.Is(err, oplog.ErrTableMissing) {
						t.Fatalf("old A's Migrate: %v, want it refused", err)
					}
					reg, err := dbsync.Track(dbA, tc.models...)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := oplog.Migrate(ctx, dbA, reg, &oplog.InstallOptions{Client: true}, mig); err != nil {
						t.Fatalf("A's migration: %v", err)
					}
					newA := h4Client(t, srv2.URL, dbA, tc.models...)
					res, err := newA.Sync(ctx)
					if err != nil {
						t.Fatalf("new A sync: %v", err)
					}
					for _, p := range res.Pulls {
						if len(p.Conflicts) != 0 {
							t.Errorf("new A's sync reports conflicts %v", p.Conflicts)
						}
					}
					if tc.name == "table" {
						// The renamed table's writes are logged once, under
						// its new name, on the node and on the server: the
						// old name's capture triggers, which the rename
						// kept on the table, are gone.
						for name, db := range map[string]*bun.DB{"node": dbA, "server": sdb} {
							lcExec(t, db, "UPDATE h4_tasks SET title = 'x-"+name+"' WHERE id = 2")
							var ops []int64
							if err := db.NewRaw("SELECT content_type_id FROM sync_operations WHERE version_id IS NULL").Scan(ctx, &ops); err != nil {
								t.Fatal(err)
							}
							if len(ops) != 1 || ops[0] != srv2.Reg.Table("h4_tasks").ContentTypeID {
								t.Errorf("%s: a write to the renamed table logged %v, want its content type once", name, ops)
							}
						}
						h4Sync(t, "a", newA)
					}
					want := map[int]string{1: "one-a", 3: "three-a"}
					if !first {
						want = tc.lost
					}
					for id, w := range want {
						var got []string
						if err := sdb.NewRaw(fmt.Sprintf(tc.read, id)).Scan(ctx, &got); err != nil {
							t.Fatal(err)
						}
						if fmt.Sprint(got) != fmt.Sprint([]string{w}) && (w != "" || len(got) != 0) {
							t.Errorf("server row %d: %v, want %q", id, got, w)
						}
					}
				})
			}
		}
	}
}
