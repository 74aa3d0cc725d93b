package client_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// afterHook runs fn after each query of a bun.DB.
type afterHook struct {
	fn func(ctx context.Context, q string)
}

func (h afterHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (h afterHook) AfterQuery(ctx context.Context, e *bun.QueryEvent)                  { h.fn(ctx, e.Query) }

// TestOwnerCheckSerialized (a reviewer's; it failed on PostgreSQL before
// owned read the row FOR SHARE): the owner check in a write transaction
// (owned) was a plain SELECT: another Client's New (own) commits its id
// while the checked transaction is open, and that transaction goes on
// writing and commits (PostgreSQL, READ COMMITTED: nothing conflicts).
// The earlier Client writes the node's sync state after the later one
// was created. Here: RegisterWith's transaction.
func TestOwnerCheckSerialized(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
			db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, testmodels.All())
			reg, err := dbsync.Track(db, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			a, err := client.New(ctx, db, reg, &client.Config{Transport: synctest.NewTransport(srv.Srv)})
			if err != nil {
				t.Fatal(err)
			}
			var armed, raced atomic.Bool
			//lint:ignore SA1019 the hook must reach the handle a Client already holds (WithQueryHook copies it)
			db.AddQueryHook(afterHook{fn: func(ctx context.Context, q string) {
				// The check in RegisterWith's transaction (the second read
				// of the owner: the first is lock's).
				if !strings.Contains(q, "FROM sync_client_owner") {
					return
				}
				if !armed.CompareAndSwap(false, true) {
					if !raced.CompareAndSwap(false, true) {
						return
					}
					done := make(chan struct{})
					go func() {
						defer close(done)
						// b's New, in another process: own().
						if _, err := db.DB.ExecContext(context.Background(), "UPDATE sync_client_owner SET owner = 'b' WHERE id = 1"); err != nil {
							t.Logf("b's own: %v", err)
						}
					}()
					select {
					case <-done: // committed while a's checked transaction is open
						raced.Store(true)
						return
					case <-time.After(300 * time.Millisecond): // waits for a's transaction: serialized
						raced.Store(false)
						go func() { <-done }()
					}
				}
			}})
			_, err = a.RegisterWith(ctx, &client.RegisterOptions{Credentials: "x"})
			if raced.Load() && err == nil {
				t.Fatal("b's id committed while a's checked register transaction was open, and a's transaction committed its writes: the check does not exclude the new owner")
			}
		})
	}
}
