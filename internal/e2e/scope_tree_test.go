package e2e_test

import (
	"context"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

type scopedFolder struct {
	bun.BaseModel `bun:"table:scoped_folders"`
	ID            int64         `bun:"id,pk,autoincrement"`
	ParentID      *int64        `bun:"parent_id"`
	OwnerID       string        `bun:"owner_id,notnull"`
	Name          string        `bun:"name,notnull"`
	Parent        *scopedFolder `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

func createFolders(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*scopedFolder)(nil)).IfNotExists().WithForeignKeys().Exec(ctx)
	return err
}

// TestScopedTreeAncestors: in a table referencing itself, a node reads the
// ancestors of the rows in its scope (its rows' foreign keys need them),
// up to the root and no further: ann's folder 4 under bob's 2 under bob's
// 1 brings 2 and 1, not bob's other folder 3. Sync and repair both work,
// and keep working; before, the ancestors were sent by one pull and
// taken back by the next, and every sync failed on a foreign key.
func TestScopedTreeAncestors(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*scopedFolder)(nil)}
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "folders", createFolders, models), createFolders, models,
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{"scoped_folders": server.OwnedBy("owner_id")}})
			run(t, srv.DB, `INSERT INTO scoped_folders (id, parent_id, owner_id, name) VALUES
(1, NULL, 'bob', 'bob root'), (2, 1, 'bob', 'bob sub'), (3, 1, 'bob', 'bob other'), (4, 2, 'ann', 'ann leaf')`)
			ann := synctest.NewClientAs(t, srv, "ann", "Bearer ann", synctest.ClientSQLite(t, "folders", createFolders, models), createFolders, models, nil)
			want := []string{"1", "2", "4"}
			for i := range 3 {
				if _, err := ann.Sync(ctx); err != nil {
					t.Fatalf("sync %d: %v", i, err)
				}
				if got := keys(t, ann.DB, "scoped_folders"); !slices.Equal(got, want) {
					t.Fatalf("after sync %d ann holds %v, want %v", i, got, want)
				}
			}
			if _, err := ann.Repair(ctx, nil); err != nil {
				t.Fatalf("repair: %v", err)
			}
			if got := keys(t, ann.DB, "scoped_folders"); !slices.Equal(got, want) {
				t.Fatalf("after repair ann holds %v, want %v", got, want)
			}
			// Her folder moved to the root: its former ancestors leave.
			run(t, srv.DB, "UPDATE scoped_folders SET parent_id = NULL WHERE id = 4")
			if _, err := ann.Sync(ctx); err != nil {
				t.Fatalf("sync after the move: %v", err)
			}
			if got := keys(t, ann.DB, "scoped_folders"); !slices.Equal(got, []string{"4"}) {
				t.Fatalf("after the move ann holds %v, want [4]", got)
			}
		})
	}
}

// TestScopedSubtreeLeavesOverLines: a subtree larger than one scope_out
// line leaves whole: a row still referencing a leaving row is refused
// only if it does not leave in a later line of the same pull.
func TestScopedSubtreeLeavesOverLines(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*scopedFolder)(nil)}
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "folders", createFolders, models), createFolders, models,
				&server.Config{AuthorizeRegister: synctest.BearerUser, ChunkSize: 2, Scopes: server.Scopes{"scoped_folders": server.OwnedBy("owner_id")}})
			run(t, srv.DB, `INSERT INTO scoped_folders (id, parent_id, owner_id, name) VALUES
(1, NULL, 'bob', 'b1'), (2, 1, 'bob', 'b2'), (3, 2, 'bob', 'b3'), (4, 3, 'ann', 'ann leaf')`)
			ann := synctest.NewClientAs(t, srv, "ann", "Bearer ann", synctest.ClientSQLite(t, "folders", createFolders, models), createFolders, models, nil)
			mustSync(t, ann)
			if got := keys(t, ann.DB, "scoped_folders"); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
				t.Fatalf("ann holds %v", got)
			}
			run(t, srv.DB, "UPDATE scoped_folders SET parent_id = NULL WHERE id = 4")
			if _, err := ann.Sync(ctx); err != nil {
				t.Fatalf("sync after the move: %v", err)
			}
			if got := keys(t, ann.DB, "scoped_folders"); !slices.Equal(got, []string{"4"}) {
				t.Fatalf("after the move ann holds %v, want [4]", got)
			}
		})
	}
}

type projectFolder struct {
	bun.BaseModel `bun:"table:project_folders"`
	ID            int64               `bun:"id,pk,autoincrement"`
	ProjectID     int64               `bun:"project_id,notnull"`
	ParentID      *int64              `bun:"parent_id"`
	Name          string              `bun:"name,notnull"`
	Project       *testmodels.Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
	Parent        *projectFolder      `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

func projectFolderModels() []any { return append(testmodels.Scoped(), (*projectFolder)(nil)) }

func createProjectFolders(ctx context.Context, db bun.IDB) error {
	if err := testmodels.CreateScoped(ctx, db); err != nil {
		return err
	}
	_, err := db.NewCreateTable().Model((*projectFolder)(nil)).IfNotExists().WithForeignKeys().Exec(ctx)
	return err
}

// TestScopedTreeAncestorElsewhere: a tree in scope through its project
// (ThroughParent), a node's folder under a folder of a project it cannot
// read: the ancestor comes with the project it references, so every
// foreign key holds on the node.
func TestScopedTreeAncestorElsewhere(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rules := synctest.ScopeRules()
			rules["project_folders"] = server.ThroughParent("project_id")
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "projectfolders", createProjectFolders, projectFolderModels()), createProjectFolders, projectFolderModels(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules})
			run(t, srv.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'p1'), (2, 'cid', 'p2')")
			run(t, srv.DB, "INSERT INTO project_folders (id, project_id, parent_id, name) VALUES (10, 1, NULL, 'f10'), (20, 2, 10, 'f20')")
			cid := synctest.NewClientAs(t, srv, "cid", "Bearer cid", synctest.ClientSQLite(t, "projectfolders", createProjectFolders, projectFolderModels()), createProjectFolders, projectFolderModels(), nil)
			for i := range 2 {
				if _, err := cid.Sync(context.Background()); err != nil {
					t.Fatalf("cid's sync %d: %v", i, err)
				}
			}
			if got := keys(t, cid.DB, "project_folders"); !slices.Equal(got, []string{"10", "20"}) {
				t.Fatalf("cid holds folders %v, want [10 20]", got)
			}
		})
	}
}
