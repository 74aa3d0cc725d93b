package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestRepairMeetsWriteDuringDownload: the application writes a tracked
// row while a repair downloads the server's snapshot, after Repair
// checked that the node had no unpushed changes. Without Force the
// repair must refuse (dbsync.ErrPendingChanges) and keep the row and its
// change; with Force it discards it and counts it in Discarded. Before,
// the check ran only before the download: the repair replaced the
// tables, dropping the write and its log entry silently (Discarded 0),
// with or without Force.
func TestRepairMeetsWriteDuringDownload(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, force := range []bool{false, true} {
			name := kind + "/plain"
			if force {
				name = kind + "/force"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewLocalServer(t, kind, nil)
				a := synctest.NewClient(t, srv, "a", nil)
				var once sync.Once
				var b *synctest.Client
				write := make(chan error, 1)
				cfg := &client.Config{OnProgress: func(p dbsync.Progress) {
					if p.Op == "repair" && p.Phase == "download" {
						once.Do(func() {
							_, err := b.DB.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (77, 'written meanwhile')")
							write <- err
						})
					}
				}}
				db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, testmodels.All())
				b = synctest.NewClientWith(t, srv, "b", db, testmodels.CreateSchema, testmodels.All(), cfg)
				l := insertList(t, a.DB, "home")
				insertTodos(t, a.DB, l, "t", 3)
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				res, err := b.Repair(ctx, &client.RepairOptions{Force: force})
				select {
				case werr := <-write:
					if werr != nil {
						t.Fatalf("the application's write: %v", werr)
					}
				default:
					t.Fatal("no download progress: the write never ran")
				}
				if !force {
					if !errors.Is(err, dbsync.ErrPendingChanges) {
						t.Fatalf("repair over a write made during its download: %v (%+v), want ErrPendingChanges", err, res)
					}
					if n := count(t, b.DB, "lists", "id = 77"); n != 1 {
						t.Fatal("the refused repair lost the application's row")
					}
					if p, err := b.Pending(ctx); err != nil || len(p) != 1 {
						t.Fatalf("pending after the refused repair: %v, %v, want the row's insert", p, err)
					}
					// Synced, the row reaches the server.
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
					if n := count(t, srv.DB, "lists", "id = 77"); n != 1 {
						t.Fatal("the row written during the repair never reached the server")
					}
					return
				}
				if err != nil {
					t.Fatalf("forced repair: %v", err)
				}
				if res.Discarded != 1 {
					t.Fatalf("forced repair discarded %d, want the write made during its download counted", res.Discarded)
				}
				if n := count(t, b.DB, "lists", "id = 77"); n != 0 {
					t.Fatal("the forced repair kept a row the server lacks")
				}
				converged(t, srv, a, b)
			})
		}
	}
}
