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

type tcA struct {
	bun.BaseModel `bun:"table:tc_a"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
	CID           *int64 `bun:"c_id"`
}

type tcB struct {
	bun.BaseModel `bun:"table:tc_b"`
	ID            int64  `bun:"id,pk,autoincrement"`
	AID           int64  `bun:"a_id,notnull"`
	ParentID      *int64 `bun:"parent_id"`
}

type tcC struct {
	bun.BaseModel `bun:"table:tc_c"`
	ID            int64 `bun:"id,pk,autoincrement"`
	BID           int64 `bun:"b_id,notnull"`
}

func tcModels() []any { return []any{(*tcA)(nil), (*tcB)(nil), (*tcC)(nil)} }

// createTc makes a cycle of three tables (a → c → b → a), b a tree too.
func createTc(ctx context.Context, db bun.IDB) error {
	key, deferred := "INTEGER PRIMARY KEY AUTOINCREMENT", " DEFERRABLE INITIALLY DEFERRED"
	if db.Dialect().Name() == dialect.PG {
		key = "BIGSERIAL PRIMARY KEY"
	}
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS tc_a (id " + key + ", owner_id TEXT NOT NULL, c_id BIGINT)",
		"CREATE TABLE IF NOT EXISTS tc_b (id " + key + ", a_id BIGINT NOT NULL REFERENCES tc_a (id)" + deferred + ", parent_id BIGINT REFERENCES tc_b (id)" + deferred + ")",
		"CREATE TABLE IF NOT EXISTS tc_c (id " + key + ", b_id BIGINT NOT NULL REFERENCES tc_b (id)" + deferred + ")",
	}
	if db.Dialect().Name() == dialect.PG {
		stmts = append(stmts, `DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'tc_a'::regclass AND conname = 'tc_a_c_fk') THEN
				ALTER TABLE tc_a ADD CONSTRAINT tc_a_c_fk FOREIGN KEY (c_id) REFERENCES tc_c (id) DEFERRABLE INITIALLY DEFERRED;
			END IF;
		END $$`)
	} else {
		stmts[0] = "CREATE TABLE IF NOT EXISTS tc_a (id " + key + ", owner_id TEXT NOT NULL, c_id BIGINT REFERENCES tc_c (id)" + deferred + ")"
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeCycleOfThree: a cycle of three tables, one of them a tree
// (tc_b's parent_id), its rows written on the server. alice owns a1;
// a1 references c2 of bob's a2, whose a2 references c3, under b3, whose
// parent b4 is under bob's a3. alice reads that whole chain (and her own
// rows), nothing else of bob's (a5 and its rows), by pull, query and
// repair.
func TestScopeCycleOfThree(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "tc", createTc, tcModels()), createTc, tcModels(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{
					"tc_a": server.OwnedBy("owner_id"),
					"tc_b": server.ThroughParent("a_id"),
					"tc_c": server.ThroughParent("b_id"),
				}})
			run(t, srv.DB, "INSERT INTO tc_a (id, owner_id) VALUES (1, 'alice'), (2, 'bob'), (3, 'bob'), (5, 'bob')")
			run(t, srv.DB, "INSERT INTO tc_b (id, a_id, parent_id) VALUES (1, 1, NULL), (2, 2, NULL), (4, 3, NULL), (3, 2, 4), (5, 5, NULL)")
			run(t, srv.DB, "INSERT INTO tc_c (id, b_id) VALUES (1, 1), (2, 2), (3, 3), (5, 5)")
			run(t, srv.DB, "UPDATE tc_a SET c_id = 2 WHERE id = 1")
			run(t, srv.DB, "UPDATE tc_a SET c_id = 3 WHERE id = 2")
			run(t, srv.DB, "UPDATE tc_a SET c_id = 5 WHERE id = 5")
			alice := synctest.NewClientAs(t, srv, "alice", "Bearer alice", synctest.ClientSQLite(t, "tc", createTc, tcModels()), createTc, tcModels(), nil)
			want := map[string][]string{"tc_a": {"1", "2", "3"}, "tc_b": {"1", "2", "3", "4"}, "tc_c": {"1", "2", "3"}}
			check := func(what string) {
				t.Helper()
				for _, table := range []string{"tc_a", "tc_b", "tc_c"} {
					wantKeys(t, alice, table, want[table]...)
					q, err := alice.Query(ctx, &protocol.QueryRequest{Table: table})
					if err != nil {
						t.Fatal(err)
					}
					if len(q.Rows) != len(want[table]) {
						t.Errorf("%s: alice queries %d rows of %s, want %d", what, len(q.Rows), table, len(want[table]))
					}
				}
			}
			mustSync(t, alice)
			check("pull")
			if _, err := alice.Repair(ctx, nil); err != nil {
				t.Fatalf("alice's repair: %v", err)
			}
			check("repair")
		})
	}
}
