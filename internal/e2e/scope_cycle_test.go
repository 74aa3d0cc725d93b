package e2e_test

// A scope around a cycle of foreign keys: the parents of readable rows
// are readable, and around a cycle that chain has no fixed depth.

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// cyProject names its current milestone; cyMilestone its project.
type cyProject struct {
	bun.BaseModel `bun:"table:cy_projects"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
	MilestoneID   *int64 `bun:"milestone_id"`
}

type cyMember struct {
	bun.BaseModel `bun:"table:cy_members"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ProjectID     int64  `bun:"project_id,notnull"`
	UserID        string `bun:"user_id,notnull"`
}

type cyMilestone struct {
	bun.BaseModel `bun:"table:cy_milestones"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ProjectID     int64  `bun:"project_id,notnull"`
	Title         string `bun:"title,notnull"`
}

func cyModels() []any { return []any{(*cyProject)(nil), (*cyMember)(nil), (*cyMilestone)(nil)} }

// createCy makes the tables, the cycle's two foreign keys deferred (each
// table's rows may come first).
func createCy(ctx context.Context, db bun.IDB) error {
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS cy_projects (id INTEGER PRIMARY KEY AUTOINCREMENT, owner_id TEXT NOT NULL, name TEXT NOT NULL, milestone_id BIGINT REFERENCES cy_milestones (id) DEFERRABLE INITIALLY DEFERRED)",
		"CREATE TABLE IF NOT EXISTS cy_members (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id BIGINT NOT NULL REFERENCES cy_projects (id) ON DELETE CASCADE, user_id TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS cy_milestones (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id BIGINT NOT NULL REFERENCES cy_projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED, title TEXT NOT NULL)",
	}
	if db.Dialect().Name() == dialect.PG {
		stmts = []string{
			"CREATE TABLE IF NOT EXISTS cy_projects (id BIGSERIAL PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, milestone_id BIGINT)",
			"CREATE TABLE IF NOT EXISTS cy_members (id BIGSERIAL PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES cy_projects (id) ON DELETE CASCADE, user_id TEXT NOT NULL)",
			"CREATE TABLE IF NOT EXISTS cy_milestones (id BIGSERIAL PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES cy_projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED, title TEXT NOT NULL)",
			`DO $$ BEGIN
				IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'cy_projects'::regclass AND conname = 'cy_projects_milestone_fk') THEN
					ALTER TABLE cy_projects ADD CONSTRAINT cy_projects_milestone_fk FOREIGN KEY (milestone_id) REFERENCES cy_milestones (id) DEFERRABLE INITIALLY DEFERRED;
				END IF;
			END $$`,
		}
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeCycleKeepsParents: projects are their owner's and their
// members'; milestones go with their project; a project names its
// current milestone. alice, a member of bob's project 10, points her own
// project 20 at its milestone 100; bob's project names carol's milestone
// 7 (written on the server). Then bob revokes alice. Every row on the
// chain alice's rows reference stays readable, around the cycle: milestone
// 100, its project 10 (with bob's later edits), that project's milestone
// 7 and its project 3; dave's rows stay out. Before, the server cut the chain where it came
// back to a table already asked: it sent milestone 100 but moved project
// 10 out, and every sync of each of alice's devices failed, a new one's
// too, and so did bob's (milestone 7 without project 3).
func TestScopeCycleKeepsParents(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "cy", createCy, cyModels()), createCy, cyModels(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{
					"cy_projects":   server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("cy_members", "project_id", "user_id")),
					"cy_members":    server.ThroughParent("project_id"),
					"cy_milestones": server.ThroughParent("project_id"),
				}})
			device := func(user string) *synctest.Client {
				return synctest.NewClientAs(t, srv, user, "Bearer "+user, synctest.ClientSQLite(t, "cy", createCy, cyModels()), createCy, cyModels(), nil)
			}
			run(t, srv.DB, "INSERT INTO cy_projects (id, owner_id, name) VALUES (3, 'carol', 'c'), (4, 'dave', 'd')")
			run(t, srv.DB, "INSERT INTO cy_milestones (id, project_id, title) VALUES (7, 3, 'c1'), (8, 4, 'd1')")
			bob, alice := device("bob"), device("alice")
			run(t, bob.DB, "INSERT INTO cy_projects (id, owner_id, name) VALUES (10, 'bob', 'shared')")
			run(t, bob.DB, "INSERT INTO cy_milestones (id, project_id, title) VALUES (100, 10, 'm')")
			run(t, bob.DB, "INSERT INTO cy_members (id, project_id, user_id) VALUES (1, 10, 'alice')")
			mustSync(t, bob)
			run(t, srv.DB, "UPDATE cy_projects SET milestone_id = 7 WHERE id = 10")
			mustSync(t, bob)
			wantKeys(t, bob, "cy_projects", "3", "10")
			wantKeys(t, bob, "cy_milestones", "7", "100")
			mustSync(t, alice)
			run(t, alice.DB, "INSERT INTO cy_projects (id, owner_id, name, milestone_id) VALUES (20, 'alice', 'own', 100)")
			mustSync(t, alice)
			run(t, bob.DB, "DELETE FROM cy_members WHERE id = 1")
			run(t, bob.DB, "UPDATE cy_projects SET name = 'private' WHERE id = 10")
			mustSync(t, bob)

			alice2 := device("alice")
			for _, c := range []*synctest.Client{alice, alice, alice2, alice2} {
				mustSync(t, c)
			}
			for _, c := range []*synctest.Client{alice, alice2} {
				wantKeys(t, c, "cy_projects", "3", "10", "20")
				wantKeys(t, c, "cy_milestones", "7", "100")
				wantKeys(t, c, "cy_members")
				var name string
				if err := c.DB.NewRaw("SELECT name FROM cy_projects WHERE id = 10").Scan(ctx, &name); err != nil || name != "private" {
					t.Errorf("%s reads project 10 as %q (%v), want bob's edit", c.Name, name, err)
				}
			}
			q, err := alice.Query(ctx, &protocol.QueryRequest{Table: "cy_projects"})
			if err != nil {
				t.Fatal(err)
			}
			var queried []string
			for _, r := range q.Rows {
				var row struct {
					ID json.Number `json:"id"`
				}
				if err := json.Unmarshal(r, &row); err != nil {
					t.Fatalf("query row %s: %v", r, err)
				}
				queried = append(queried, row.ID.String())
			}
			slices.Sort(queried)
			if want := []string{"10", "20", "3"}; !slices.Equal(queried, want) {
				t.Errorf("alice queries projects %v, want %v", queried, want)
			}
			if _, err := alice.Repair(ctx, nil); err != nil {
				t.Fatalf("alice's repair: %v", err)
			}
			wantKeys(t, alice, "cy_projects", "3", "10", "20")
			wantKeys(t, alice, "cy_milestones", "7", "100")
		})
	}
}
