package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/server"
)

// TestSyncRefusedAmidDirectWrites: the server's application writes to a
// tracked table all the time (here once during every push, to a row the
// push does not touch), and the node's push is refused for good (a unique
// value another row holds: the BeforePush hook gives it to a list first).
// The direct writes do not touch the row holding the value, so the server
// answers the unique conflict itself, which Sync returns for the
// application to settle (errors.As finds it). Before, the server answered
// pull_needed while any direct write was pending, every round of Sync
// pulled and pushed again, and Sync gave up saying that other nodes push
// faster (later, naming the refusal only in its text).
func TestSyncRefusedAmidDirectWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var srv *synctest.Server
	var armed atomic.Bool
	var n atomic.Int64
	hook := func(ctx context.Context, tx bun.Tx, _ *server.PushInfo) error {
		if !armed.Load() {
			return nil
		}
		// The application's write, committed while the push is applied.
		if _, err := srv.DB.ExecContext(context.Background(), "UPDATE lists SET name = ? WHERE id = 2", fmt.Sprintf("d%d", n.Add(1))); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (1000, 'a')")
		return err
	}
	srv = synctest.NewTemplateServer(t, dbtest.KindPostgres, &server.Config{BeforePush: hook})
	a := synctest.NewTemplateClient(t, srv, "a", nil)
	insertList(t, a.DB, "one")
	insertList(t, a.DB, "two")
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	exec(t, a.DB, "UPDATE lists SET name = 'a' WHERE id = 1")
	_, err := a.Sync(ctx)
	if err == nil {
		t.Fatal("sync succeeded, want the unique conflict")
	}
	var uc *dbsync.UniqueConstraintError
	if !errors.As(err, &uc) || errors.Is(err, dbsync.ErrPullNeeded) {
		t.Fatalf("sync: %v; want the refusal (a *dbsync.UniqueConstraintError)", err)
	}
	t.Log(err)
}
