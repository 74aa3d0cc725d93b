package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// A node restored from its own backup (README "Guarantees, assumptions,
// limits"). Its log holds again the changes pending at the backup, which
// it pushed after it; the server does not know them from new ones. Reset
// merges and pushes them again: the insert, its integer key taken on the
// server (by itself), as a second row, the update over another node's
// later one. Repair with Force drops them and takes the server's rows,
// its own pushed after the backup included.
func TestRestoredNodeRecovery(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, way := range []string{"reset", "repair"} {
			t.Run(kind+"/"+way, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				sdb := dbtest.Open(t, kind)
				srv := synctest.NewServerWith(t, sdb, h4Create, h4V1, nil)
				dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
				a := synctest.NewClientWith(t, srv, "a", dbA, h4Create, h4V1, nil)
				b := synctest.NewClientWith(t, srv, "b", dbB, h4Create, h4V1, nil)
				lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				// Pending at the backup: an update and an insert.
				lcExec(t, dbA, "UPDATE h4_items SET title = 'one-a' WHERE id = 1", "INSERT INTO h4_items (title) VALUES ('three-a')")
				restore := synctest.Backup(t, dbA)
				h4Sync(t, "a", a.Client)
				lcExec(t, dbA, "INSERT INTO h4_items (title) VALUES ('four-a')")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				lcExec(t, dbB, "UPDATE h4_items SET title = 'one-b' WHERE id = 1")
				h4Sync(t, "b", b.Client)
				restore()
				want := "[one-b two three-a four-a]"
				if way == "reset" {
					if _, err := a.Reset(ctx); err != nil {
						t.Fatalf("reset: %v", err)
					}
					want = "[one-a two three-a four-a three-a]"
				} else if _, err := a.Repair(ctx, &client.RepairOptions{Force: true}); err != nil {
					t.Fatalf("repair: %v", err)
				}
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				var titles []string
				if err := sdb.NewRaw("SELECT title FROM h4_items ORDER BY id").Scan(ctx, &titles); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(titles) != want {
					t.Errorf("server items %v, want %s", titles, want)
				}
				all := synctest.Dump(t, sdb, srv.Reg)
				for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
					if d := synctest.Diff(all, synctest.Dump(t, db, srv.Reg)); d != "" {
						t.Errorf("%s differs:\n%s", name, d)
					}
				}
			})
		}
	}
}
