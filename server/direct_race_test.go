package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestDirectWriteDuringPush: a direct write to the server's database (an
// admin tool, on a connection of its own) made while a push is applied,
// after the push sealed the direct writes and checked its base, to a row
// the push writes. It must not be lost under the push nor logged out of
// order: on PostgreSQL it waits for the push to commit (the push locked
// the row before it sealed), then applies over it, sealed in a later
// version; on SQLite the database's single writer orders them.
// Before, on PostgreSQL, the push overwrote the direct write and its
// operation was sealed after the push's: an update lost, and a delete
// re-created by the push but pulled as deleted (nodes and server
// diverged). The push is rebased (based on version 1, after version 2
// changed another row) or fast-forward.
func TestDirectWriteDuringPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name, write string
			want        int // rows of lists 2 at the end
		}{
			{"update", "UPDATE lists SET name = 'admin' WHERE id = 2", 1},
			{"delete", "DELETE FROM lists WHERE id = 2", 0},
		} {
			for _, rebased := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/rebased=%v", kind, tc.name, rebased), func(t *testing.T) {
					t.Parallel()
					var f *fixture
					armed := false
					direct := make(chan error, 1)
					hook := func(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
						if !armed {
							return nil
						}
						armed = false
						go func() {
							_, err := f.DB.ExecContext(context.Background(), tc.write)
							direct <- err
						}()
						// Long enough for the direct write to commit, when
						// nothing holds it.
						select {
						case err := <-direct:
							direct <- err
						case <-time.After(300 * time.Millisecond):
						}
						return nil
					}
					f = newFixture(t, kind, &server.Config{BeforePush: hook})
					a, b, c := f.register(), f.register(), f.register()
					if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
						t.Fatal(err)
					}
					base := ptr(1)
					if rebased {
						if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).list(models.Insert, 3, "three").Ptr()); err != nil {
							t.Fatal(err)
						}
					} else if _, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 1, "b").Ptr()); err != nil {
						t.Fatal(err)
					} else {
						base = ptr(2)
					}
					armed = true
					resp, err := f.Srv.Push(ctx, b.id, newPush(base).list(models.Update, 2, "node-b").Ptr())
					if derr := <-direct; derr != nil {
						t.Fatalf("direct write: %v", derr)
					}
					if err != nil && !errors.Is(err, dbsync.ErrPullNeeded) {
						t.Fatalf("push: %v", err)
					}
					if _, err := f.Srv.Seal(ctx); err != nil {
						t.Fatal(err)
					}
					var n int
					var name string
					if err := f.DB.NewRaw("SELECT COUNT(*), COALESCE(MAX(name), '') FROM lists WHERE id = 2").Scan(ctx, &n, &name); err != nil {
						t.Fatal(err)
					}
					if n != tc.want || (n == 1 && name != "admin") {
						t.Fatalf("the server holds %d rows of lists 2 (%q) after the push (%v) and the direct write: the direct write was lost", n, name, err)
					}
					// What a node holding the version before the push pulls
					// agrees with the server: the row's last operation.
					from := *base
					if resp != nil {
						from = resp.NewVersionID - 1
					}
					var last models.Command
					for _, op := range pulledOps(mustPull(t, f.Srv, c.id, &protocol.PullRequest{LatestVersionID: ptr(from)})) {
						if op.Table == "lists" && op.RowID == "2" {
							last = op.Command
						}
					}
					if (last == models.Delete) != (n == 0) {
						t.Fatalf("the server holds %d rows of lists 2, and a pull's last operation of it is %q", n, last)
					}
				})
			}
		}
	}
}

// TestPushWaitsForAppTransaction: an application's read-modify-write
// (PostgreSQL: SELECT ... FOR UPDATE, then UPDATE; SQLite: the write lock)
// of a row a push writes, while the push comes. The push waits for the
// row, sees the application's write sealed and answers pull_needed (its
// base is older); neither side deadlocks, and the application's write
// stays.
func TestPushWaitsForAppTransaction(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
				t.Fatal(err)
			}
			tx, err := f.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			first := "SELECT name FROM lists WHERE id = 2 FOR UPDATE"
			if kind == dbtest.KindSQLite {
				first = "UPDATE lists SET name = name WHERE id = 2"
			}
			if _, err := tx.ExecContext(ctx, first); err != nil {
				t.Fatal(err)
			}
			pushed := make(chan error, 1)
			go func() {
				_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 2, "node-b").Ptr())
				pushed <- err
			}()
			time.Sleep(200 * time.Millisecond) // the push waits for the row
			if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'admin' WHERE id = 2"); err != nil {
				t.Fatalf("application update: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("application commit: %v", err)
			}
			if err := <-pushed; !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push: %v, want ErrPullNeeded", err)
			}
			var name string
			if err := f.DB.NewRaw("SELECT name FROM lists WHERE id = 2").Scan(ctx, &name); err != nil || name != "admin" {
				t.Fatalf("lists 2 is %q (%v), want the application's write", name, err)
			}
		})
	}
}
