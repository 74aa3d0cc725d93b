package server_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestAbandonedPushIDsBounded: pulls naming made-up push ids do not grow
// sync_pushes without bound. A node keeps at most MaxAbandonedPushes
// marks, a pull beyond them is refused without writing, and every new
// version (a push or a seal) deletes them; a push abandoned before that
// version is still never applied.
func TestAbandonedPushIDsBounded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			abandoned := func() int {
				t.Helper()
				n, err := f.DB.NewSelect().Model((*models.Push)(nil)).Where("version_id IS NULL").Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return int(n)
			}
			// a's push never reached the server; a asks about it.
			lost := newPush(nil).list(models.Insert, 1, "lost")
			if h := mustPull(t, f.Srv, a.id, &protocol.PullRequest{PushID: lost.req.PushID})[0]; h.Push == nil || h.Push.VersionID != nil {
				t.Fatalf("status of the lost push %+v, want not applied", h.Push)
			}
			for range server.MaxAbandonedPushes - 1 {
				mustPull(t, f.Srv, a.id, &protocol.PullRequest{PushID: uuid.NewString()})
			}
			if n := abandoned(); n != server.MaxAbandonedPushes {
				t.Fatalf("%d abandoned marks, want %d", n, server.MaxAbandonedPushes)
			}
			before := f.state()
			for range 3 {
				if _, err := pull(t, f.Srv, a.id, &protocol.PullRequest{PushID: uuid.NewString()}); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("pull naming one made-up push id too many: %v, want ErrBadRequest", err)
				}
			}
			f.mustUnchanged(before, "pulls beyond the bound")
			// Asking again about a known id still works, and b has its own bound.
			if h := mustPull(t, f.Srv, a.id, &protocol.PullRequest{PushID: lost.req.PushID})[0]; h.Push == nil || h.Push.VersionID != nil {
				t.Fatalf("second status of the lost push %+v", h.Push)
			}
			mustPull(t, f.Srv, b.id, &protocol.PullRequest{PushID: uuid.NewString()})
			if _, err := f.Srv.Push(ctx, a.id, &lost.req); !errors.Is(err, dbsync.ErrPushAbandoned) {
				t.Fatalf("abandoned push sent late: %v, want ErrPushAbandoned", err)
			}

			// b's version deletes every mark; the lost push stays unapplied.
			if r, err := f.Srv.Push(ctx, b.id, newPush(nil).list(models.Insert, 2, "b").Ptr()); err != nil || r.NewVersionID != 1 {
				t.Fatalf("b's push: %+v %v", r, err)
			}
			if n := abandoned(); n != 0 {
				t.Fatalf("%d abandoned marks after a new version, want 0", n)
			}
			before = f.state()
			if _, err := f.Srv.Push(ctx, a.id, &lost.req); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("abandoned push sent after a new version: %v, want ErrPullNeeded", err)
			}
			f.mustUnchanged(before, "abandoned push after its mark was deleted")
			if h := mustPull(t, f.Srv, a.id, &protocol.PullRequest{PushID: lost.req.PushID})[0]; h.Push == nil || h.Push.VersionID != nil {
				t.Fatalf("status of the lost push after the new version %+v, want not applied", h.Push)
			}

			// A seal of direct writes is a new version too.
			for range server.MaxAbandonedPushes - 1 {
				mustPull(t, f.Srv, a.id, &protocol.PullRequest{PushID: uuid.NewString()})
			}
			if _, err := f.DB.NewRaw("INSERT INTO lists (id, name) VALUES (3, 'direct')").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if v, err := f.Srv.Seal(ctx); err != nil || v != 2 {
				t.Fatalf("seal: %d %v", v, err)
			}
			if n := abandoned(); n != 0 {
				t.Fatalf("%d abandoned marks after a seal, want 0", n)
			}
			if _, err := f.Srv.Push(ctx, a.id, &lost.req); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("abandoned push sent after the seal: %v, want ErrPullNeeded", err)
			}
		})
	}
}

// TestAbandonedPushIDsBoundedConcurrently: the bound holds for pulls of
// one node sent at once. Each counted the node's marks before any of them
// inserted its own, so that 64 concurrent pulls naming made-up push ids
// left up to 21 marks (PostgreSQL), beyond MaxAbandonedPushes. Now the
// marks are counted again as each is inserted, serialized per node: the
// pulls beyond the bound are refused (ErrBadRequest), their ids unmarked.
func TestAbandonedPushIDsBoundedConcurrently(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			const pulls = 64
			errs := make(chan error, pulls)
			start := make(chan struct{})
			for range pulls {
				go func() {
					<-start
					_, err := pull(t, f.Srv, a.id, &protocol.PullRequest{PushID: uuid.NewString()})
					errs <- err
				}()
			}
			close(start)
			answered := int64(0)
			for range pulls {
				switch err := <-errs; {
				case err == nil:
					answered++
				case !errors.Is(err, dbsync.ErrBadRequest):
					t.Errorf("pull naming a made-up push id: %v, want an answer or ErrBadRequest", err)
				}
			}
			n, err := f.DB.NewSelect().Model((*models.Push)(nil)).Where("version_id IS NULL").Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n > server.MaxAbandonedPushes || answered != int64(n) {
				t.Fatalf("%d concurrent pulls: %d answered, %d marks, want at most %d marks, one per answer",
					pulls, answered, n, server.MaxAbandonedPushes)
			}
		})
	}
}
