package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/server"
)

// TestDirectWriteDuringSyncConverges: a direct write to the server's
// PostgreSQL database committed while a node's push is applied (after it
// sealed), to a row the push writes. Where the push could not lock the
// row first (an insert; a chunked commit) it is refused (pull_needed):
// the node's Sync pulls the direct write and pushes again, and the node,
// another node and the server end with the same rows.
func TestDirectWriteDuringSyncConverges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, local, direct string }{
		{"update", "UPDATE lists SET name = 'b1' WHERE id = 1", "UPDATE lists SET name = 'admin' WHERE id = 1"},
		{"delete", "UPDATE lists SET name = 'b1' WHERE id = 1", "DELETE FROM lists WHERE id = 1"},
		{"insert", "INSERT INTO lists (id, name) VALUES (7, 'b7')", "INSERT INTO lists (id, name) VALUES (7, 'admin')"},
	} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", tc.name, chunked), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				var srv *synctest.Server
				var mu sync.Mutex
				armed := false
				refused := 0
				direct := make(chan error, 1)
				hook := func(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
					mu.Lock()
					go1 := armed
					armed = false
					mu.Unlock()
					if !go1 {
						return nil
					}
					go func() {
						_, err := srv.DB.ExecContext(context.Background(), tc.direct)
						direct <- err
					}()
					select {
					case err := <-direct:
						direct <- err
					case <-time.After(300 * time.Millisecond):
					}
					return nil
				}
				onEvent := func(_ context.Context, ev dbsync.Event) {
					if ev.Op == "push" && errors.Is(ev.Err, dbsync.ErrPullNeeded) {
						mu.Lock()
						refused++
						mu.Unlock()
					}
				}
				srv = synctest.NewServer(t, dbtest.KindPostgres, &server.Config{BeforePush: hook, OnEvent: onEvent})
				cfg := &client.Config{}
				if chunked {
					cfg.PushChunkOperations = 1
				}
				a := synctest.NewClient(t, srv, "a", nil)
				b := synctest.NewClient(t, srv, "b", cfg)
				if _, err := a.DB.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two')"); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{tc.local, "UPDATE lists SET name = 'b2' WHERE id = 2"} {
					if _, err := b.DB.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				mu.Lock()
				armed = true
				mu.Unlock()
				if _, err := b.Sync(ctx); err != nil {
					t.Fatalf("b sync with a direct write during its push: %v", err)
				}
				if err := <-direct; err != nil {
					t.Logf("direct write: %v", err)
				}
				for _, c := range []*synctest.Client{b, a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatalf("%s sync: %v", c.Name, err)
					}
				}
				ds := synctest.Dump(t, srv.DB, srv.Reg)
				for _, c := range []*synctest.Client{a, b} {
					if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), ds); d != "" {
						t.Fatalf("%s and the server differ:\n%s", c.Name, d)
					}
				}
				mu.Lock()
				t.Logf("pushes refused pull_needed: %d; server: %v", refused, ds["lists"])
				mu.Unlock()
			})
		}
	}
}
