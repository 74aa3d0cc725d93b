package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
)

// TestRebasedPushCursor: a push based on an older version that the server
// rebases leaves the node's version below the versions it lacks; the next
// pull brings them, its own version's operations left out (never applied
// again over a newer local change, even under merge.ServerWins), and the
// node ends with the server's rows and versions, nothing logged twice.
// Modes: Sync (one push, one pull); Push twice then Pull (the second push
// changes a row of the first: its own version is no conflict); a push
// whose reply is lost, settled by the pull.
func TestRebasedPushCursor(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, mode := range []string{"sync", "push", "lost"} {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewTemplateServer(t, kind, nil)
				tr := &transport{}
				a := synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client(), DefaultPolicy: merge.ServerWins})
				b := synctest.NewTemplateClient(t, srv, "b", nil)
				la := insertList(t, a.DB, "a's")
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				// b moves the server on; a's next push is based on version 1.
				insertList(t, b.DB, "b's")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				insertTodos(t, a.DB, la, "a", 2)
				version := func(want int64) {
					t.Helper()
					if v, err := a.Version(ctx); err != nil || v != want {
						t.Fatalf("a's version %d (%v), want %d", v, err, want)
					}
				}
				switch mode {
				case "sync":
					res, err := a.Sync(ctx)
					if err != nil || len(res.Pushes) != 1 || !res.Pushes[0].Rebased || res.Pushes[0].VersionID != 3 ||
						len(res.Pulls) != 1 || res.Pulls[0].Operations != 1 || res.VersionID != 3 {
						t.Fatalf("sync: %+v %v, want a rebased push as version 3, one pull of b's operation", res, err)
					}
					version(3)
				case "push":
					pr, err := a.Push(ctx)
					if err != nil || !pr.Rebased || pr.VersionID != 3 {
						t.Fatalf("push: %+v %v, want rebased as version 3", pr, err)
					}
					version(1)
					exec(t, a.DB, "UPDATE todos SET done = true WHERE title = 'a-0'")
					if pr, err = a.Push(ctx); err != nil || !pr.Rebased || pr.VersionID != 4 {
						t.Fatalf("second push: %+v %v, want rebased as version 4", pr, err)
					}
					version(1)
					// A newer local change of a row of both pushes: the pull
					// must not bring the pushed states back over it.
					exec(t, a.DB, "UPDATE todos SET title = 'a-0 local' WHERE title = 'a-0'")
					pl, err := a.Pull(ctx)
					if err != nil || pl.Versions != 3 || pl.Operations != 1 || len(pl.Conflicts) != 0 || pl.VersionID != 4 {
						t.Fatalf("pull: %+v %v, want versions 2-4, b's one operation, no conflict", pl, err)
					}
					version(4)
					if n := count(t, a.DB, "todos", "title = 'a-0 local' AND done"); n != 1 {
						t.Fatalf("a's local change was overwritten: %v", titles(t, a.DB))
					}
					if res, err := a.Sync(ctx); err != nil || len(res.Pushes) != 1 || res.Pushes[0].Rebased || len(res.Pulls) != 0 {
						t.Fatalf("sync at the latest version: %+v %v, want one fast-forward push", res, err)
					}
				case "lost":
					tr.setHook(loseReply("push"))
					if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
						t.Fatalf("push with a lost reply: %v", err)
					}
					tr.setHook(nil)
					version(1)
					pl, err := a.Pull(ctx)
					if err != nil || pl.PushApplied == nil || !*pl.PushApplied || pl.Operations != 1 || pl.VersionID != 3 {
						t.Fatalf("pull: %+v %v, want the push applied, b's one operation", pl, err)
					}
					version(3)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				converged(t, srv, a, b)
				var server, local []int64
				for db, vs := range map[*[]int64]*synctest.Client{&server: nil, &local: a} {
					q := srv.DB.NewSelect()
					if vs != nil {
						q = vs.DB.NewSelect()
					}
					if err := q.Table("sync_versions").Column("version_id").Order("version_id").Scan(ctx, db); err != nil {
						t.Fatal(err)
					}
				}
				if !slices.Equal(server, local) {
					t.Fatalf("a holds versions %v, the server %v", local, server)
				}
				if n := count(t, a.DB, "sync_operations", ""); n != 0 {
					t.Fatalf("a's log holds %d entries after sync", n)
				}
				var dups int
				if err := srv.DB.NewRaw(`SELECT COUNT(*) FROM (SELECT version_id, content_type_id, row_id FROM sync_operations
GROUP BY version_id, content_type_id, row_id HAVING COUNT(*) > 1) d`).Scan(ctx, &dups); err != nil || dups != 0 {
					t.Fatalf("%d rows logged twice in a version on the server (%v)", dups, err)
				}
			})
		}
	}
}
