package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// scopedVisit is a push-only row of the scoped schema: a user's visit to
// a project, sent to the server and never pulled.
type scopedVisit struct {
	bun.BaseModel `bun:"table:visits"`

	ID        int64               `bun:"id,pk,autoincrement"`
	ProjectID int64               `bun:"project_id,notnull"`
	UserID    string              `bun:"user_id,notnull"`
	Project   *testmodels.Project `bun:"rel:belongs-to,join:project_id=id"`
}

// TestScopePushOnlyRefs: a row of a push-only table is never pulled, but
// its foreign key holds the row it references on the server: set to
// another principal's project, it would keep that project's owner from
// ever deleting it (the delete refused as out of scope, the visit being
// no row of the owner's). A push may set it only to a row the node reads,
// as for a pulled table; whole and chunked.
func TestScopePushOnlyRefs(t *testing.T) {
	t.Parallel()
	rules := synctest.ScopeRules()
	rules["visits"] = server.OwnedBy("user_id")
	mods := append(testmodels.Scoped(), dbsync.PushOnly((*scopedVisit)(nil)))
	schema := func(ctx context.Context, db bun.IDB) error {
		if err := testmodels.CreateScoped(ctx, db); err != nil {
			return err
		}
		_, err := db.NewCreateTable().Model((*scopedVisit)(nil)).IfNotExists().WithForeignKeys().Exec(ctx)
		return err
	}
	visit := func(p *push, id, project int64, user string) *push {
		return p.op("visits", fmt.Sprint(id), models.Insert, rowJSON(map[string]any{"id": id, "project_id": project, "user_id": user}))
	}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, schema, mods...)
				ann, cid := f.registerAs("ann"), f.registerAs("cid")
				if err := f.pushFn(ann, chunked)(newPush(nil).project(models.Insert, 1, "ann", "ann's secret")); err != nil {
					t.Fatal(err)
				}
				if err := f.pushFn(cid, chunked)(visit(newPush(ptr(f.latest())).project(models.Insert, 2, "cid", "cid's"), 1, 2, "cid")); err != nil {
					t.Fatalf("cid's visit to its own project: %v", err)
				}
				before := f.state()
				var se *dbsync.ScopeError
				err := f.pushFn(cid, chunked)(visit(newPush(ptr(f.latest())), 2, 1, "cid"))
				if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "visits", PK: "2"}) {
					t.Fatalf("cid's visit to ann's project: %v, want a ScopeError naming visits 2", err)
				}
				f.mustUnchanged(before, "visit to another's project")
				// Moved there: refused the same.
				move := newPush(ptr(f.latest())).op("visits", "1", models.Update, rowJSON(map[string]any{"id": 1, "project_id": 1, "user_id": "cid"}))
				if err := f.pushFn(cid, chunked)(move); !errors.As(err, &se) {
					t.Fatalf("cid moves its visit to ann's project: %v, want a ScopeError", err)
				}
				f.mustUnchanged(before, "visit moved to another's project")
				if _, err := f.Srv.Push(ctx, ann.id, &newPush(ptr(f.latest())).del("projects", 1).req); err != nil {
					t.Fatalf("ann deletes her project: %v", err)
				}
			})
		}
	}
}
