package e2e_test

// How far a scope reaches: the parents a readable row needs, up the whole
// chain, and the membership rows a member may edit without granting
// itself access.

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

type rvProject struct {
	bun.BaseModel `bun:"table:rv_projects"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

// rvMember shares a project with a user; Muted is the member's own
// setting.
type rvMember struct {
	bun.BaseModel `bun:"table:rv_members"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	UserID        string     `bun:"user_id,notnull"`
	Muted         bool       `bun:"muted,notnull"`
	Project       *rvProject `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

type rvTask struct {
	bun.BaseModel `bun:"table:rv_tasks"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	Title         string     `bun:"title,notnull"`
	Project       *rvProject `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

// rvComment is its author's (OwnedBy), on a task of any project the
// author reads.
type rvComment struct {
	bun.BaseModel `bun:"table:rv_comments"`
	ID            int64   `bun:"id,pk,autoincrement"`
	AuthorID      string  `bun:"author_id,notnull"`
	TaskID        int64   `bun:"task_id,notnull"`
	Body          string  `bun:"body,notnull"`
	Task          *rvTask `bun:"rel:belongs-to,join:task_id=id"`
}

func rvModels() []any {
	return []any{(*rvProject)(nil), (*rvMember)(nil), (*rvTask)(nil), (*rvComment)(nil)}
}

func createRv(ctx context.Context, db bun.IDB) error {
	for _, m := range rvModels() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func rvRules() server.Scopes {
	return server.Scopes{
		"rv_projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("rv_members", "project_id", "user_id")),
		"rv_members":  server.ThroughParent("project_id"),
		"rv_tasks":    server.ThroughParent("project_id"),
		"rv_comments": server.OwnedBy("author_id"),
	}
}

func newRvServer(t *testing.T, kind string) *synctest.Server {
	t.Helper()
	return synctest.NewServerWith(t, synctest.ServerDB(t, kind, "rv", createRv, rvModels()), createRv, rvModels(),
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rvRules()})
}

func rvClient(t *testing.T, srv *synctest.Server, user, device string) *synctest.Client {
	t.Helper()
	return synctest.NewClientAs(t, srv, user+"/"+device, "Bearer "+user, synctest.ClientSQLite(t, "rv", createRv, rvModels()), createRv, rvModels(), nil)
}

// TestScopeGrandchildKeepsParentChain: bob, a member of ann's
// project, comments on one of its tasks (his own row, OwnedBy). Ann
// revokes the membership. The comment stays in bob's scope, so the task
// it references stays readable (the documented known limit); the task
// references the project, which must then be readable too. The server
// sends the task but moves the project out: bob's pull fails with a
// ScopeError naming the task, which has no pending change, so
// DiscardPending cannot help: every Sync fails from then on.
func TestScopeGrandchildKeepsParentChain(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newRvServer(t, kind)
			ann, bob := rvClient(t, srv, "ann", "phone"), rvClient(t, srv, "bob", "phone")
			run(t, ann.DB, "INSERT INTO rv_projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
			run(t, ann.DB, "INSERT INTO rv_tasks (id, project_id, title) VALUES (10, 1, 't')")
			run(t, ann.DB, "INSERT INTO rv_members (id, project_id, user_id, muted) VALUES (100, 1, 'bob', false)")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "rv_tasks", "10")
			run(t, bob.DB, "INSERT INTO rv_comments (id, author_id, task_id, body) VALUES (1000, 'bob', 10, 'hi')")
			mustSync(t, bob)
			run(t, ann.DB, "DELETE FROM rv_members WHERE id = 100")
			mustSync(t, ann)

			for i, err := range syncs(bob, 2) {
				if err != nil {
					var se *dbsync.ScopeError
					if errors.As(err, &se) {
						derr := bob.DiscardPending(ctx, se.Entries)
						_, again := bob.Sync(ctx)
						t.Fatalf("bob's sync %d after losing access: %v; DiscardPending: %v; sync again: %v", i, err, derr, again)
					}
					t.Fatalf("bob's sync %d after losing access: %v", i, err)
				}
			}
			// What bob reads, a repair gives him too.
			if _, err := bob.Repair(ctx, nil); err != nil {
				t.Fatalf("bob's repair: %v", err)
			}
		})
	}
}

// TestScopeRepairGrandchildChain: the same state, seen by a
// repair alone: a fresh device of bob's repairs and gets the task without
// the project it references.
func TestScopeRepairGrandchildChain(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newRvServer(t, kind)
			ann := rvClient(t, srv, "ann", "phone")
			run(t, ann.DB, "INSERT INTO rv_projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
			run(t, ann.DB, "INSERT INTO rv_tasks (id, project_id, title) VALUES (10, 1, 't')")
			mustSync(t, ann)
			// bob's comment on ann's task, written on the server (as it
			// would be while he was a member).
			run(t, srv.DB, "INSERT INTO rv_comments (id, author_id, task_id, body) VALUES (1000, 'bob', 10, 'hi')")
			bob := rvClient(t, srv, "bob", "laptop")
			q, err := bob.Query(ctx, &protocol.QueryRequest{Table: "rv_tasks"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := bob.Query(ctx, &protocol.QueryRequest{Table: "rv_projects"})
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Rows) != len(p.Rows) {
				t.Errorf("bob queries %d tasks (referencing project 1) and %d projects", len(q.Rows), len(p.Rows))
			}
			if _, err := bob.Sync(ctx); err != nil {
				t.Fatalf("bob's first sync: %v", err)
			}
			if _, err := bob.Repair(ctx, nil); err != nil {
				t.Fatalf("bob's repair: %v", err)
			}
		})
	}
}

// TestScopeDeleteRacesRevoke: bob deletes a task of ann's project
// offline while ann revokes his membership; bob gives the refused delete
// up and converges; when ann shares again the task comes back.
func TestScopeDeleteRacesRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newRvServer(t, dbtest.KindSQLite)
	ann, bob := rvClient(t, srv, "ann", "phone"), rvClient(t, srv, "bob", "phone")
	run(t, ann.DB, "INSERT INTO rv_projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
	run(t, ann.DB, "INSERT INTO rv_tasks (id, project_id, title) VALUES (10, 1, 't'), (11, 1, 'u')")
	run(t, ann.DB, "INSERT INTO rv_members (id, project_id, user_id, muted) VALUES (100, 1, 'bob', false)")
	mustSync(t, ann)
	mustSync(t, bob)
	run(t, bob.DB, "DELETE FROM rv_tasks WHERE id = 10")
	run(t, bob.DB, "INSERT INTO rv_tasks (id, project_id, title) VALUES (12, 1, 'new')")
	run(t, ann.DB, "DELETE FROM rv_members WHERE id = 100")
	mustSync(t, ann)
	for i := 0; i < 4; i++ {
		_, err := bob.Sync(ctx)
		if err == nil {
			break
		}
		var se *dbsync.ScopeError
		if !errors.As(err, &se) {
			t.Fatalf("bob sync %d: %v", i, err)
		}
		if err := bob.DiscardPending(ctx, se.Entries); err != nil {
			t.Fatal(err)
		}
	}
	mustSync(t, bob)
	wantKeys(t, bob, "rv_projects")
	wantKeys(t, bob, "rv_tasks")
	run(t, ann.DB, "INSERT INTO rv_members (id, project_id, user_id, muted) VALUES (101, 1, 'bob', false)")
	mustSync(t, ann)
	mustSync(t, bob)
	wantKeys(t, bob, "rv_projects", "1")
	wantKeys(t, bob, "rv_tasks", "10", "11")
	wantKeys(t, bob, "rv_members", "101")
}

// TestScopeMemberEditsOwnMembership: bob, a member of ann's project, may
// edit his membership row (mute the project) with a task in the same
// push, in one request or in chunks of one operation: nothing of it gives
// him access he did not have. (It was refused: the check ignored every
// membership row the push wrote, his own included.) He may not move the
// row to a project he was not a member of: it then grants access it did
// not, and does not count.
func TestScopeMemberEditsOwnMembership(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunk := range []int{0, 1} {
			for _, repoint := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/chunk=%d/repoint=%v", kind, chunk, repoint), func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					srv := newRvServer(t, kind)
					ann := rvClient(t, srv, "ann", "phone")
					bob := synctest.NewClientAs(t, srv, "bob/phone", "Bearer bob", synctest.ClientSQLite(t, "rv", createRv, rvModels()), createRv, rvModels(), &client.Config{PushChunkOperations: chunk})
					run(t, ann.DB, "INSERT INTO rv_projects (id, owner_id, name) VALUES (1, 'ann', 'p'), (2, 'ann', 'secret')")
					run(t, ann.DB, "INSERT INTO rv_tasks (id, project_id, title) VALUES (10, 1, 't'), (20, 2, 's')")
					run(t, ann.DB, "INSERT INTO rv_members (id, project_id, user_id, muted) VALUES (100, 1, 'bob', false)")
					mustSync(t, ann)
					mustSync(t, bob)
					wantKeys(t, bob, "rv_projects", "1")
					if !repoint {
						run(t, bob.DB, "UPDATE rv_members SET muted = true WHERE id = 100")
						run(t, bob.DB, "UPDATE rv_tasks SET title = 'edited' WHERE id = 10")
						if _, err := bob.Sync(ctx); err != nil {
							t.Fatalf("bob mutes his membership and edits a task: %v", err)
						}
						return
					}
					// Bob's node knows project 2 exists (a stale copy, say)
					// and moves his membership there.
					run(t, bob.DB, "INSERT INTO rv_projects (id, owner_id, name) VALUES (2, 'ann', 'secret')")
					run(t, bob.DB, "DELETE FROM sync_operations WHERE row_id = '2'")
					run(t, bob.DB, "UPDATE rv_members SET project_id = 2, muted = true WHERE id = 100")
					_, err := bob.Push(ctx)
					var se *dbsync.ScopeError
					if !errors.As(err, &se) {
						t.Fatalf("bob moves his membership to another project: %v, want a ScopeError", err)
					}
					var project int64
					if err := srv.DB.QueryRowContext(ctx, "SELECT project_id FROM rv_members WHERE id = 100").Scan(&project); err != nil || project != 1 {
						t.Fatalf("bob's membership on the server: project %d, %v", project, err)
					}
				})
			}
		}
	}
}
