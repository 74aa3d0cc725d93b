package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestPullMeetsConcurrentLocalWrite: on a PostgreSQL node, a local write
// that commits while a pull is applied must meet the merge as a pending
// change (M3, D1), not be overwritten by the server's row. b renames P1
// and adds a child under P3 in a transaction left open while its pull
// starts; a renamed P1 and deleted P3. Under the default policy b's name
// wins (M3, keep local) and P3 comes back under b's child (D1).
func TestPullMeetsConcurrentLocalWrite(t *testing.T) {
	t.Parallel()
	for _, kind := range mrKinds {
		t.Run(kind.name, func(t *testing.T) {
			e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: dbtest.KindPostgres, nodes: dbtest.KindPostgres,
				keys: map[string]string{}, syms: map[string]string{}}
			e.start(nil)
			e.seed()
			e.rename(e.a.DB, "P1", "p1-a")
			e.del(e.a.DB, mrParents, "P3")
			e.sync(e.a)

			tx, err := e.b.DB.BeginTx(e.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.rename(tx, "P1", "p1-b")
			e.child(tx, "C9", "P3", "c9")
			done := make(chan error, 1)
			go func() {
				_, err := e.b.Pull(e.ctx)
				done <- err
			}()
			// Let the pull reach the merge, then commit the local write.
			time.Sleep(300 * time.Millisecond)
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("b pull: %v", err)
			}
			e.want("b's parents", e.parents(e.b.DB), map[string]string{"p1-b": "P1", "p2": "P2", "p3": "P3"})
			e.want("b's children", e.children(e.b.DB), map[string]string{"c1": "p1-b", "c2": "p2", "c9": "p3"})
			e.sync(e.b)
			e.sync(e.a)
			ps, cs := e.converged()
			e.want("parents", ps, map[string]string{"p1-b": "P1", "p2": "P2", "p3": "P3"})
			e.want("children", cs, map[string]string{"c1": "p1-b", "c2": "p2", "c9": "p3"})
		})
	}
}
