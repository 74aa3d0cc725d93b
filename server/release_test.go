package server_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/server"
)

// A server process started with older models than a release started
// before on its database (an old release still running, or restarted,
// once a new one migrated the database and started) refuses pushes: its
// deletes could cascade, unlogged, into tables it does not know. Processes
// of the newest release write; once the newer release is rolled back with
// its migration (its tables dropped), an older process writes again.
func TestOlderReleaseRefusesPushes(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// The new release's first process (all the test models).
			f := newFixtureWith(t, kind, nil, testmodels.All()...)
			n := f.register()
			open := func(models ...any) *server.Server {
				reg, err := dbsync.Track(f.DB, models...)
				if err != nil {
					t.Fatal(err)
				}
				s, err := server.New(ctx, f.DB, reg, &server.Config{AuthorizeRegister: server.OpenRegistration})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			// The old release (without notes), started after the new one.
			old := open(&testmodels.List{}, &testmodels.Todo{})
			before := f.state()
			if _, err := old.Push(ctx, n.id, newPush(nil).list(models.Insert, 1, "old").Ptr()); !errors.Is(err, dbsync.ErrBusy) {
				t.Fatalf("a push through an older release's process: %v, want ErrBusy", err)
			}
			f.mustUnchanged(before, "a push through an older release's process")
			// Processes of the new release write.
			same := open(testmodels.All()...)
			for i, s := range []*server.Server{f.Srv, same} {
				var base *int64
				if i > 0 {
					base = ptr(int64(i))
				}
				if _, err := s.Push(ctx, n.id, newPush(base).list(models.Insert, int64(i+1), "new"+strconv.Itoa(i)).Ptr()); err != nil {
					t.Fatalf("process %d of the newest release: %v", i, err)
				}
			}
			// The new release rolled back with its migration.
			if _, err := f.DB.ExecContext(ctx, "DROP TABLE notes"); err != nil {
				t.Fatal(err)
			}
			rolledBack := open(&testmodels.List{}, &testmodels.Todo{})
			if _, err := rolledBack.Push(ctx, n.id, newPush(ptr(2)).list(models.Insert, 3, "old again").Ptr()); err != nil {
				t.Fatalf("the older release after a rollback: %v", err)
			}
		})
	}
}
