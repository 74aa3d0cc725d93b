package server_test

import (
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestX2RebaseFloor pins merge.md X2: a pull marks a push id it does not
// know abandoned; the next version deletes the mark and raises the node's
// rebase floor to the version before it, so a copy of the push still in
// flight (based on that version or an older one) is never applied, even
// where it could be rebased: no version after its base changed its rows.
// Asking again still answers "not applied", and the node's later pushes,
// based above the floor, are rebased as any.
func TestX2RebaseFloor(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if r, err := f.Srv.Push(ctx, b.id, newPush(nil).list(models.Insert, 1, "b1").Ptr()); err != nil || r.NewVersionID != 1 {
				t.Fatalf("b's push: %+v, %v", r, err)
			}
			// a's push, sent at version 1, whose answer never comes: the
			// pull settles it as not applied.
			inFlight := newPush(ptr(1)).list(models.Insert, 2, "a2")
			msgs := mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(1), PushID: inFlight.req.PushID})
			if st := msgs[0].Push; st == nil || st.VersionID != nil {
				t.Fatalf("push status %+v, want not applied", st)
			}
			// The next version forgets the mark and raises a's floor to 1.
			if r, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Insert, 3, "b3").Ptr()); err != nil || r.NewVersionID != 2 {
				t.Fatalf("b's second push: %+v, %v", r, err)
			}
			// The copy arrives now: version 2 did not touch list 2, so it
			// would be rebased, but the node gave it up.
			before := f.state()
			_, err := f.Srv.Push(ctx, a.id, &inFlight.req)
			if !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("late copy of an abandoned push: %v, want ErrPullNeeded", err)
			}
			f.mustUnchanged(before, "late copy of an abandoned push")
			// Over HTTP too.
			status, eb, raw := httpPush(t, f.Server, a, &inFlight.req)
			if status != 409 || eb.Error.Code != protocol.CodePullNeeded {
				t.Fatalf("late copy over HTTP: %d %s, want 409 %s", status, raw, protocol.CodePullNeeded)
			}
			f.mustUnchanged(before, "late copy of an abandoned push over HTTP")
			// A push of a's based above the floor is rebased.
			if r, err := f.Srv.Push(ctx, b.id, newPush(ptr(2)).list(models.Insert, 4, "b4").Ptr()); err != nil || r.NewVersionID != 3 {
				t.Fatalf("b's third push: %+v, %v", r, err)
			}
			if r, err := f.Srv.Push(ctx, a.id, newPush(ptr(2)).list(models.Insert, 2, "a2").Ptr()); err != nil || r.NewVersionID != 4 {
				t.Fatalf("a's push based on version 2: %+v, %v, want version 4 (rebased)", r, err)
			}
			if got := f.state().Dump["lists"]; len(got) != 4 {
				t.Fatalf("server lists %v, want 4", got)
			}
			// Asking again still answers "not applied" (and marks the id
			// again: the node's next floor is the latest version).
			msgs = mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(4), PushID: inFlight.req.PushID})
			if st := msgs[0].Push; st == nil || st.VersionID != nil {
				t.Fatalf("push status asked again %+v, want not applied", st)
			}
		})
	}
}
