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

// A server process started with other models than the one started last
// on its database (an old release still running once a new one migrated
// and started) refuses pushes: its deletes could cascade, unlogged, into
// tables it does not know. Processes of the same release both write; a
// process started again with its models writes again.
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
			// The old release: without notes.
			old := open(&testmodels.List{}, &testmodels.Todo{})
			if _, err := old.Push(ctx, n.id, newPush(nil).list(models.Insert, 1, "old").Ptr()); err != nil {
				t.Fatalf("the process started last: %v", err)
			}
			// The new release starts again: the old process refuses.
			same := open(testmodels.All()...)
			before := f.state()
			if _, err := old.Push(ctx, n.id, newPush(ptr(1)).list(models.Insert, 2, "old2").Ptr()); !errors.Is(err, dbsync.ErrBusy) {
				t.Fatalf("a push through an older release's process: %v, want ErrBusy", err)
			}
			f.mustUnchanged(before, "a push through an older release's process")
			for i, s := range []*server.Server{f.Srv, same} { // the same models: both write
				if _, err := s.Push(ctx, n.id, newPush(ptr(int64(i+1))).list(models.Insert, int64(i+3), "new"+strconv.Itoa(i)).Ptr()); err != nil {
					t.Fatalf("process %d of the release started last: %v", i, err)
				}
			}
		})
	}
}
