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

// scopedGrant is a membership row whose project column is no foreign key.
type scopedGrant struct {
	bun.BaseModel `bun:"table:grants"`

	ID        int64  `bun:"id,pk,autoincrement"`
	ProjectID int64  `bun:"project_id,notnull"`
	UserID    string `bun:"user_id,notnull"`
}

// TestScopeNoSelfGrant: a membership row a push writes may not give the
// node access it does not hold (README: a node may share what it holds,
// not grant itself access), whatever the membership table's own rule lets
// it write:
//
//   - members are a user's own rows (OwnedBy user_id) and a read-only
//     viewers table lets bob read ann's project: his membership row of it
//     (its foreign key to a project he reads) would make him an editor;
//   - grants are a user's own rows whose project column is no foreign
//     key: cid's grant of ann's project, or of a project not created yet,
//     would open it to him.
//
// Refused (ScopeError naming the membership row), whole and chunked,
// nothing written, the project unchanged; ann still shares her project.
func TestScopeNoSelfGrant(t *testing.T) {
	t.Parallel()
	rules := server.Scopes{
		"projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("members", "project_id", "user_id"),
			server.MemberOf("grants", "project_id", "user_id"),
			server.ReadOnly(server.MemberOf("viewers", "project_id", "user_id"))),
		"members": server.OwnedBy("user_id"),
		"grants":  server.OwnedBy("user_id"),
		"tasks":   server.ThroughParent("project_id"),
		"tags":    server.Global(),
	}
	mods := append(testmodels.Scoped(), (*scopedGrant)(nil))
	schema := func(ctx context.Context, db bun.IDB) error {
		if err := testmodels.CreateScoped(ctx, db); err != nil {
			return err
		}
		if _, err := db.NewCreateTable().Model((*scopedGrant)(nil)).IfNotExists().Exec(ctx); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS viewers (project_id BIGINT NOT NULL, user_id VARCHAR(64) NOT NULL)")
		return err
	}
	grantRow := func(p *push, id, project int64, user string) *push {
		return p.op("grants", fmt.Sprint(id), models.Insert, rowJSON(map[string]any{"id": id, "project_id": project, "user_id": user}))
	}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, schema, mods...)
				ann, bob, cid := f.registerAs("ann"), f.registerAs("bob"), f.registerAs("cid")
				if err := f.pushFn(ann, chunked)(newPush(nil).project(models.Insert, 1, "ann", "ann's")); err != nil {
					t.Fatal(err)
				}
				f.direct("INSERT INTO viewers (project_id, user_id) VALUES (1, 'bob')")
				for _, c := range []struct {
					name string
					n    node
					p    *push
					want protocol.ScopeEntry
				}{
					{"a viewer makes itself an editor", bob, newPush(ptr(f.latest())).member(models.Insert, 5, 1, "bob"), protocol.ScopeEntry{Table: "members", PK: "5"}},
					{"a grant of another's project", cid, grantRow(newPush(ptr(f.latest())), 1, 1, "cid"), protocol.ScopeEntry{Table: "grants", PK: "1"}},
					{"a grant of a project to come", cid, grantRow(newPush(ptr(f.latest())), 2, 7, "cid"), protocol.ScopeEntry{Table: "grants", PK: "2"}},
				} {
					before := f.state()
					var se *dbsync.ScopeError
					if err := f.pushFn(c.n, chunked)(c.p); !errors.As(err, &se) || !equalEntries(se.Entries, []protocol.ScopeEntry{c.want}) {
						t.Fatalf("%s: %v, want a ScopeError naming %v", c.name, err, c.want)
					}
					f.mustUnchanged(before, c.name)
				}
				if err := f.pushFn(bob, chunked)(newPush(ptr(f.latest())).project(models.Update, 1, "ann", "defaced")); err == nil {
					t.Fatal("bob, a viewer, renames ann's project")
				}
				// Sharing stays: ann gives bob a membership, cid a grant of
				// her project, and bob edits his membership row.
				if err := f.pushFn(ann, chunked)(grantRow(newPush(ptr(f.latest())).project(models.Insert, 2, "ann", "shared"), 3, 2, "ann")); err != nil {
					t.Fatalf("ann's grant of her own project: %v", err)
				}
				f.direct("INSERT INTO members (id, project_id, user_id) VALUES (6, 1, 'bob')")
				if err := f.pushFn(bob, chunked)(newPush(ptr(f.latest())).member(models.Update, 6, 1, "bob")); err != nil {
					t.Fatalf("bob rewrites his membership: %v", err)
				}
				if err := f.pushFn(bob, chunked)(newPush(ptr(f.latest())).project(models.Update, 1, "ann", "edited by a member")); err != nil {
					t.Fatalf("bob, a member, renames the project: %v", err)
				}
			})
		}
	}
}
