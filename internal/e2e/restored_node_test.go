package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// A node restored from its own backup (README "Guarantees, assumptions,
// limits"). Its log holds again the changes pending at the backup, which
// it pushed after it, and it lacks the rows it pushed since, which its
// pulls leave out as its own. Its sync, pull and reset are refused with
// dbsync.ErrRepairNeeded, nothing written anywhere: the server holds
// versions of the node's own pushes newer than any its database knows
// (sync_client_pushed). Before, a sync pushed the changes again (the
// insert, its integer key taken on the server by itself, as a second
// row; the update over another node's later one) and a pull left the
// node without its own later rows, silently. Repair with Force drops
// them and takes the server's rows, its own pushed after the backup
// included. Without pending changes the pull is refused too; a chunked
// push's commit is refused as a push is.
func TestRestoredNodeRecovery(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, c := range []struct{ pending, chunked bool }{{true, false}, {true, true}, {false, false}} {
			pending := c.pending
			t.Run(fmt.Sprintf("%s/pending=%v/chunked=%v", kind, pending, c.chunked), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				sdb := dbtest.Open(t, kind)
				srv := synctest.NewServerWith(t, sdb, h4Create, h4V1, nil)
				dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
				var cfg *client.Config
				if c.chunked { // a push of two operations in two requests and a commit
					cfg = &client.Config{PushChunkOperations: 1}
				}
				a := synctest.NewClientWith(t, srv, "a", dbA, h4Create, h4V1, cfg)
				b := synctest.NewClientWith(t, srv, "b", dbB, h4Create, h4V1, nil)
				lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				if pending { // at the backup: an update and an insert
					lcExec(t, dbA, "UPDATE h4_items SET title = 'one-a' WHERE id = 1", "INSERT INTO h4_items (title) VALUES ('three-a')")
				}
				restore := synctest.Backup(t, dbA)
				h4Sync(t, "a", a.Client)
				lcExec(t, dbA, "INSERT INTO h4_items (title) VALUES ('four-a')")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				lcExec(t, dbB, "UPDATE h4_items SET title = 'one-b' WHERE id = 1")
				h4Sync(t, "b", b.Client)
				restore()
				server := synctest.Dump(t, sdb, srv.Reg)
				node := synctest.Dump(t, dbA, srv.Reg)
				refused := map[string]func() error{
					"sync":  func() error { _, err := a.Sync(ctx); return err },
					"pull":  func() error { _, err := a.Pull(ctx); return err },
					"reset": func() error { _, err := a.Reset(ctx); return err },
				}
				if pending {
					refused["push"] = func() error { _, err := a.Push(ctx); return err }
				}
				for what, f := range refused {
					if err := f(); !errors.Is(err, dbsync.ErrRepairNeeded) {
						t.Fatalf("%s of the restored node: %v, want dbsync.ErrRepairNeeded", what, err)
					}
					if d := synctest.Diff(server, synctest.Dump(t, sdb, srv.Reg)); d != "" {
						t.Fatalf("the server changed by the restored node's %s:\n%s", what, d)
					}
					if d := synctest.Diff(node, synctest.Dump(t, dbA, srv.Reg)); d != "" {
						t.Fatalf("the restored node changed by its %s:\n%s", what, d)
					}
				}
				if _, err := a.Repair(ctx, &client.RepairOptions{Force: pending}); err != nil {
					t.Fatalf("repair: %v", err)
				}
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				var titles []string
				if err := sdb.NewRaw("SELECT title FROM h4_items ORDER BY id").Scan(ctx, &titles); err != nil {
					t.Fatal(err)
				}
				want := "[one-b two four-a]"
				if pending {
					want = "[one-b two three-a four-a]"
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
