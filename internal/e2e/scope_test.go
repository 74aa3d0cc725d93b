package e2e_test

import (
	"context"
	"errors"
	"slices"
	"strings"
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

// scopeRules: a project is its owner's and its members'; members and
// tasks follow their project; tags are read by all, written by none.
func scopeRules() server.Scopes {
	return server.Scopes{
		"projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("members", "project_id", "user_id")),
		"members":  server.ThroughParent("project_id"),
		"tasks":    server.ThroughParent("project_id"),
		"tags":     server.Global(),
	}
}

func bearerUser(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
	user, ok := strings.CutPrefix(info.Credentials, "Bearer ")
	if !ok || user == "" {
		return nil, errors.New("no bearer token")
	}
	return &server.Registration{UserID: &user}, nil
}

func newScopedServer(t *testing.T, kind string) *synctest.Server {
	t.Helper()
	return synctest.NewServerWith(t, dbtest.Open(t, kind), testmodels.CreateScoped, testmodels.Scoped(),
		&server.Config{AuthorizeRegister: bearerUser, Scopes: scopeRules()})
}

func scopedClient(t *testing.T, srv *synctest.Server, user, device string) *synctest.Client {
	t.Helper()
	return synctest.NewClientAs(t, srv, user+"/"+device, "Bearer "+user, dbtest.SQLite(t), testmodels.CreateScoped, testmodels.Scoped(), nil)
}

// keys lists a table's keys on a database, in order.
func keys(t *testing.T, db bun.IDB, table string) []string {
	t.Helper()
	var out []string
	if err := db.NewRaw("SELECT CAST(id AS TEXT) FROM ? ORDER BY id", bun.Ident(table)).Scan(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSync(t *testing.T, c *synctest.Client) {
	t.Helper()
	if _, err := c.Sync(context.Background()); err != nil {
		t.Fatalf("%s sync: %v", c.Name, err)
	}
}

func run(t *testing.T, db bun.IDB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func wantKeys(t *testing.T, c *synctest.Client, table string, want ...string) {
	t.Helper()
	if got := keys(t, c.DB, table); !slices.Equal(got, want) {
		t.Fatalf("%s holds %s %v, want %v", c.Name, table, got, want)
	}
}

// pendingCount counts a node's unpushed operations.
func pendingCount(t *testing.T, c *synctest.Client) int {
	t.Helper()
	n, err := c.DB.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestScopeMoveInMoveOut: over HTTP, on both dialects, nodes of two users
// hold only their scope: a principal's devices share it; rows enter a
// node's scope at its next pull (membership granted, ownership changed on
// the server) and leave it (membership revoked, ownership changed, the
// principal removed), children with them, without being logged as local
// deletes; pending local changes to a row that left are refused with a
// *dbsync.ScopeError naming them, and the pull is not applied; writes
// outside the scope are refused with one.
func TestScopeMoveInMoveOut(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newScopedServer(t, kind)
			run(t, srv.DB, "INSERT INTO tags (id, name) VALUES (1, 'urgent')")
			ann1, ann2, bob := scopedClient(t, srv, "ann", "phone"), scopedClient(t, srv, "ann", "laptop"), scopedClient(t, srv, "bob", "phone")

			run(t, ann1.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'shared'), (2, 'ann', 'private')")
			run(t, ann1.DB, "INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'secret')")
			run(t, bob.DB, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'bob', 'bob''s')")
			mustSync(t, ann1)
			mustSync(t, bob)
			mustSync(t, ann2)
			wantKeys(t, ann2, "projects", "1", "2")
			wantKeys(t, ann2, "tasks", "1", "2", "3")
			mustSync(t, bob)
			wantKeys(t, bob, "projects", "10")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "tags", "1")

			// Move-in: ann shares project 1 with bob.
			run(t, ann1.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob')")
			mustSync(t, ann1)
			res, err := bob.Pull(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Project 1 and tasks 1 and 2 move in; member 1 is new in the
			// pulled version and comes as its operation.
			if res.ScopeIn != 3 || res.ScopeOut != 0 {
				t.Fatalf("bob's pull: %d rows in, %d out, want 3 and 0", res.ScopeIn, res.ScopeOut)
			}
			wantKeys(t, bob, "projects", "1", "10")
			wantKeys(t, bob, "tasks", "1", "2")
			wantKeys(t, bob, "members", "1")

			// Bob edits the shared project; ann's devices get it.
			run(t, bob.DB, "UPDATE tasks SET title = 'by bob' WHERE id = 1")
			mustSync(t, bob)
			mustSync(t, ann2)
			var title string
			if err := ann2.DB.NewRaw("SELECT title FROM tasks WHERE id = 1").Scan(ctx, &title); err != nil || title != "by bob" {
				t.Fatalf("ann2 task 1: %q %v", title, err)
			}

			// A write outside bob's scope is refused by the server (403).
			run(t, bob.DB, "UPDATE tags SET name = 'mine' WHERE id = 1")
			_, err = bob.Push(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "tags", PK: "1"}) {
				t.Fatalf("bob pushes a tag: %v, want a ScopeError naming tags 1", err)
			}
			run(t, bob.DB, "UPDATE tags SET name = 'urgent' WHERE id = 1")
			run(t, bob.DB, "DELETE FROM sync_operations WHERE version_id IS NULL")

			// Move-out: ann revokes the membership; bob's copies go, not
			// logged as his deletes.
			run(t, ann1.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, ann1)
			mustSync(t, bob)
			wantKeys(t, bob, "projects", "10")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "members")
			if n := pendingCount(t, bob); n != 0 {
				t.Fatalf("bob logged %d operations for rows that left his scope", n)
			}

			// Pending changes to a row that leaves: refused, nothing lost.
			run(t, ann1.DB, "INSERT INTO members (id, project_id, user_id) VALUES (2, 1, 'bob')")
			mustSync(t, ann1)
			mustSync(t, bob)
			wantKeys(t, bob, "tasks", "1", "2")
			run(t, bob.DB, "UPDATE tasks SET title = 'offline edit' WHERE id = 2")
			run(t, ann1.DB, "DELETE FROM members WHERE id = 2")
			mustSync(t, ann1)
			_, err = bob.Pull(ctx)
			if !errors.As(err, &se) || !slices.Contains(se.Entries, protocol.ScopeEntry{Table: "tasks", PK: "2"}) {
				t.Fatalf("bob's pull with a pending change to a row that left: %v, want a ScopeError naming tasks 2", err)
			}
			wantKeys(t, bob, "tasks", "1", "2")
			if err := bob.DB.NewRaw("SELECT title FROM tasks WHERE id = 2").Scan(ctx, &title); err != nil || title != "offline edit" {
				t.Fatalf("bob's pending edit: %q %v", title, err)
			}
			// Bob gives the edit up: the next pull moves the rows out.
			run(t, bob.DB, "DELETE FROM sync_operations WHERE version_id IS NULL")
			mustSync(t, bob)
			wantKeys(t, bob, "tasks")

			// Ownership changed on the server: project 2 moves from ann to
			// bob, with its task.
			run(t, srv.DB, "UPDATE projects SET owner_id = 'bob' WHERE id = 2")
			mustSync(t, bob)
			mustSync(t, ann2)
			wantKeys(t, bob, "projects", "2", "10")
			wantKeys(t, bob, "tasks", "3")
			wantKeys(t, ann2, "projects", "1")
			wantKeys(t, ann2, "tasks", "1", "2")
			if n := pendingCount(t, ann2); n != 0 {
				t.Fatalf("ann2 logged %d operations for rows that left her scope", n)
			}

			// The principal removed: bob's node loses its user; at its next
			// pull (no new version) everything scoped leaves.
			run(t, srv.DB, "UPDATE sync_nodes SET registry_user_id = NULL WHERE node_id = ?", nodeID(t, bob))
			mustSync(t, bob)
			wantKeys(t, bob, "projects")
			wantKeys(t, bob, "tasks")
			wantKeys(t, bob, "tags", "1")

			// Every node equals the server's rows in its scope.
			mustSync(t, ann1)
			for _, c := range []*synctest.Client{ann1, ann2} {
				wantKeys(t, c, "projects", "1")
				wantKeys(t, c, "tasks", "1", "2")
			}
		})
	}
}

func nodeID(t *testing.T, c *synctest.Client) int64 {
	t.Helper()
	id, err := c.NodeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}
