package e2e_test

// Nodes on scoped servers in states reached by ordinary use that once
// failed every Sync (or had their push refused at every sync), short of
// Repair with Force.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// stuckLabel is a user's own label (OwnedBy owner_id); tasks of any project
// may reference it.
type stuckLabel struct {
	bun.BaseModel `bun:"table:stuck_labels"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

// stuckProject: owned, shared through stuckMember; its name is unique.
type stuckProject struct {
	bun.BaseModel `bun:"table:stuck_projects"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull,unique"`
}

type stuckMember struct {
	bun.BaseModel `bun:"table:stuck_members"`
	ID            int64         `bun:"id,pk,autoincrement"`
	ProjectID     int64         `bun:"project_id,notnull"`
	UserID        string        `bun:"user_id,notnull"`
	Project       *stuckProject `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

type stuckTask struct {
	bun.BaseModel `bun:"table:stuck_tasks"`
	ID            int64         `bun:"id,pk,autoincrement"`
	ProjectID     int64         `bun:"project_id,notnull"`
	LabelID       *int64        `bun:"label_id"`
	Title         string        `bun:"title,notnull"`
	Project       *stuckProject `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
	Label         *stuckLabel   `bun:"rel:belongs-to,join:label_id=id"`
}

func stuckModels() []any {
	return []any{(*stuckLabel)(nil), (*stuckProject)(nil), (*stuckMember)(nil), (*stuckTask)(nil)}
}

func createStuck(ctx context.Context, db bun.IDB) error {
	for _, m := range stuckModels() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func stuckRules() server.Scopes {
	return server.Scopes{
		"stuck_labels":   server.OwnedBy("owner_id"),
		"stuck_projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("stuck_members", "project_id", "user_id")),
		"stuck_members":  server.ThroughParent("project_id"),
		"stuck_tasks":    server.ThroughParent("project_id"),
	}
}

func newStuckServer(t *testing.T, kind string) *synctest.Server {
	t.Helper()
	return synctest.NewServerWith(t, synctest.ServerDB(t, kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(),
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: stuckRules()})
}

func stuckClient(t *testing.T, srv *synctest.Server, user, device string) *synctest.Client {
	t.Helper()
	return synctest.NewClientAs(t, srv, user+"/"+device, "Bearer "+user, synctest.ClientSQLite(t, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), nil)
}

// syncs syncs c n times and returns the errors.
func syncs(c *synctest.Client, n int) []error {
	var out []error
	for range n {
		_, err := c.Sync(context.Background())
		out = append(out, err)
	}
	return out
}

// TestScopeInRestoresDeletedParent: bob deletes his label L (not
// pushed) while a task of ann's project, out of his scope, references it
// (he set the label while he was a member). Ann shares the project again:
// the task enters bob's scope (scope_in) referencing the row he deleted.
// D2 says the row comes back and the local delete is dropped; the pull
// must not fail on the foreign key, and the node must keep syncing.
func TestScopeInRestoresDeletedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newStuckServer(t, kind)
			ann, bob := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (100, 10, 't')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "stuck_tasks", "100")
			// Bob labels ann's task with his label.
			run(t, bob.DB, "UPDATE stuck_tasks SET label_id = 1 WHERE id = 100")
			mustSync(t, bob)
			mustSync(t, ann)
			// Ann revokes bob's membership; the project leaves his scope.
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "stuck_tasks")
			wantKeys(t, bob, "stuck_labels", "1")
			// Bob deletes his label, offline.
			run(t, bob.DB, "DELETE FROM stuck_labels WHERE id = 1")
			// Ann shares the project again.
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
			mustSync(t, ann)

			for i, err := range syncs(bob, 3) {
				if err != nil {
					t.Fatalf("bob sync %d: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_tasks", "100")
			wantKeys(t, bob, "stuck_labels", "1")
			_ = ctx
		})
	}
}

// TestScopeDeleteReferencedOutOfScope: bob deletes his label L while a task
// out of his scope references it (the first half of the scenario above,
// without the share). His push is refused: the refusal is a ScopeError
// naming his row (not ann's task), so that the application can give the
// delete up (DiscardPending); the label then comes back.
func TestScopeDeleteReferencedOutOfScope(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newStuckServer(t, kind)
			ann, bob := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (100, 10, 't')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "UPDATE stuck_tasks SET label_id = 1 WHERE id = 100")
			mustSync(t, bob)
			mustSync(t, ann)
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "DELETE FROM stuck_labels WHERE id = 1")
			// The refusal names bob's row, not ann's task he may not read;
			// giving the delete up brings the label back.
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "stuck_labels", PK: "1"}) {
				t.Fatalf("bob's delete of a label referenced out of his scope: %v, want a ScopeError naming stuck_labels 1", err)
			}
			if strings.Contains(err.Error(), "stuck_tasks") {
				t.Fatalf("the refusal names a row bob may not read: %v", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d after giving the delete up: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_labels", "1")
		})
	}
}

// TestScopeInUniquePendingInsert: bob creates a project named "X",
// not pushed; ann's project named "X" enters his scope (she shares it).
// U4: the sync fails with a *dbsync.UniqueConstraintError naming bob's
// row; he renames it and the next sync succeeds.
func TestScopeInUniquePendingInsert(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := newStuckServer(t, kind)
			ann, bob := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'X')")
			mustSync(t, ann)
			run(t, bob.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (20, 'bob', 'X')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			uniqueThenRename(t, bob)
		})
	}
}

// TestScopeInUniquePendingUpdate: as above, with bob's pending rename
// of a project he had pushed.
func TestScopeInUniquePendingUpdate(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := newStuckServer(t, kind)
			ann, bob := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (20, 'bob', 'B')")
			mustSync(t, bob)
			mustSync(t, ann)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (30, 'ann', 'X')")
			mustSync(t, ann)
			run(t, bob.DB, "UPDATE stuck_projects SET name = 'X' WHERE id = 20")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 30, 'bob')")
			mustSync(t, ann)
			uniqueThenRename(t, bob)
		})
	}
}

// uniqueThenRename: bob's sync fails with a UniqueConstraintError
// naming his project 20 (or another key K1 gave it); renaming it lets the
// next sync through.
func uniqueThenRename(t *testing.T, bob *synctest.Client) {
	t.Helper()
	ctx := context.Background()
	_, err := bob.Sync(ctx)
	var uc *dbsync.UniqueConstraintError
	if !errors.As(err, &uc) {
		t.Fatalf("bob sync: %v, want a *dbsync.UniqueConstraintError naming his project", err)
	}
	run(t, bob.DB, "UPDATE stuck_projects SET name = 'Y' WHERE owner_id = 'bob' AND name = 'X'")
	for i, err := range syncs(bob, 2) {
		if err != nil {
			t.Fatalf("bob sync %d after renaming: %v", i, err)
		}
	}
}

// TestScopeChunkRestoresDeletedParent (D2 on the chunk path):
// bob deletes his label offline while his other device labels a shared
// task with it; the pull's chunk brings the task, D2 restores the label.
func TestScopeChunkRestoresDeletedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := newStuckServer(t, kind)
			ann, bob, bob2 := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone"), stuckClient(t, srv, "bob", "laptop")
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (100, 10, 't')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			mustSync(t, bob2)
			run(t, bob.DB, "DELETE FROM stuck_labels WHERE id = 1")
			run(t, bob2.DB, "UPDATE stuck_tasks SET label_id = 1 WHERE id = 100")
			mustSync(t, bob2)
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_labels", "1")
		})
	}
}

// TestScopeDiscardTakesServerRow: bob moves his own task into ann's shared
// project while offline; ann revokes his membership meanwhile. His push
// is refused (403, ScopeError naming the task) and he gives the move up
// with DiscardPending (S5), which gives the task the server's values:
// back in his own project. Before, it kept its local parent (ann's
// project), which then left his scope: every pull refused it, and with
// nothing pending DiscardPending could no longer help.
func TestScopeDiscardTakesServerRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newStuckServer(t, kind)
			ann, bob := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (1, 'bob', 'bob''s')")
			run(t, bob.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (5, 1, 'mine')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "stuck_projects", "1", "10")
			// Offline, bob moves his task into ann's project; ann revokes.
			run(t, bob.DB, "UPDATE stuck_tasks SET project_id = 10 WHERE id = 5")
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "stuck_tasks", PK: "5"}) {
				t.Fatalf("bob's move into a project he may no longer read: %v, want a ScopeError naming stuck_tasks 5", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			var project int64
			if err := bob.DB.NewRaw("SELECT project_id FROM stuck_tasks WHERE id = 5").Scan(ctx, &project); err != nil || project != 1 {
				t.Fatalf("the task given up must take the server's values: project %d, %v", project, err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d after giving the move up: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_projects", "1")
			wantKeys(t, bob, "stuck_tasks", "5")
		})
	}
}
