package server_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestCloseDatabaseLocked: Close records the held versions not written
// yet, but a database that does not answer (here: sync_node_activity
// locked by another transaction, as by a stuck job or a connection cut
// without a reset) must not hold Close, and the shutdown after it, for
// ever: on PostgreSQL it did, with no bound at all. Close now gives the
// write up after its wait (the versions not recorded only hold the trim
// back: the record stays at or below what the node holds), and the
// server works on once the database answers again. (PostgreSQL only: a
// SQLite server's write waits at most its busy timeout, 20 s in the
// tests' DSN, which the wait does not shorten.)
func TestCloseDatabaseLocked(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{dbtest.KindPostgres} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			writer, n := f.register(), f.register()
			for i := range int64(3) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				if _, err := f.Srv.Push(ctx, writer.id, newPush(base).list(models.Insert, i+1, "l"+strconv.FormatInt(i, 10)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(1)}) // recorded at once
			mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(2)}) // pending: written on Close

			tx, err := f.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "LOCK TABLE sync_node_activity IN EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			f.Srv.SetCloseWait(100 * time.Millisecond)
			closed := make(chan error, 1)
			go func() { closed <- f.Srv.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatalf("close: %v", err)
				}
			case <-time.After(hangGuard):
				_ = tx.Rollback()
				<-closed
				t.Fatalf("Close waited for the locked database for %s", hangGuard)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			var held int64
			if err := f.DB.NewRaw("SELECT held_version FROM sync_node_activity WHERE node_id = ?", n.id).Scan(ctx, &held); err != nil {
				t.Fatal(err)
			}
			if held < 1 || held > 2 {
				t.Fatalf("held version %d recorded, want 1 (not written) or 2", held)
			}
			// The other methods keep working.
			mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(3)})
		})
	}
}
