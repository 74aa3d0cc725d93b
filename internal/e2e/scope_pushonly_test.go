package e2e_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// scopeVisit is a push-only row of the scoped schema: a user's visit to
// a project, pushed and never pulled; visitNote is one about a visit,
// push-only too.
type scopeVisit struct {
	bun.BaseModel `bun:"table:visits"`

	ID        int64               `bun:"id,pk,autoincrement"`
	ProjectID int64               `bun:"project_id,notnull"`
	UserID    string              `bun:"user_id,notnull"`
	Project   *testmodels.Project `bun:"rel:belongs-to,join:project_id=id"`
}

type visitNote struct {
	bun.BaseModel `bun:"table:visit_notes"`

	ID      int64       `bun:"id,pk,autoincrement"`
	VisitID int64       `bun:"visit_id,notnull"`
	UserID  string      `bun:"user_id,notnull"`
	Visit   *scopeVisit `bun:"rel:belongs-to,join:visit_id=id"`
}

// threadNote is a push-only row that references a project and, as a
// reply, another thread note: a table referencing both a pulled table and
// itself.
type threadNote struct {
	bun.BaseModel `bun:"table:thread_notes"`

	ID        int64               `bun:"id,pk,autoincrement"`
	ProjectID int64               `bun:"project_id,notnull"`
	ReplyToID *int64              `bun:"reply_to_id"`
	UserID    string              `bun:"user_id,notnull"`
	Project   *testmodels.Project `bun:"rel:belongs-to,join:project_id=id"`
	ReplyTo   *threadNote         `bun:"rel:belongs-to,join:reply_to_id=id"`
}

func scopeVisitModels() []any {
	return append(testmodels.Scoped(), dbsync.PushOnly((*scopeVisit)(nil)), dbsync.PushOnly((*visitNote)(nil)),
		dbsync.PushOnly((*threadNote)(nil)))
}

func createScopeVisits(ctx context.Context, db bun.IDB) error {
	if err := testmodels.CreateScoped(ctx, db); err != nil {
		return err
	}
	for _, m := range []any{(*scopeVisit)(nil), (*visitNote)(nil), (*threadNote)(nil)} {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeOutTakesPushedRows, servers and nodes of both dialects: a
// member's node pushed rows of push-only tables (a visit to the project,
// a note on the visit) referencing a project it is then removed from.
// The project leaves its scope at the next pull, and the pushed rows,
// which the server keeps and never sends back, leave the node with it
// (S1). Before, every later pull failed with a *dbsync.ScopeError naming
// the visit, which had no pending change for DiscardPending to give up:
// the node could never pull again. A visit not pushed yet is a pending
// change (S2): the pull is refused naming it and its note until the
// application gives them up.
func TestScopeOutTakesPushedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name    string
			pending bool // ann's visit is not pushed when she is removed
		}{{"pushed", false}, {"pending", true}} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv, bob, ann := visitWorld(t, kind, nil)
				wantKeys(t, ann, "projects", "10", "20")
				run(t, ann.DB, "INSERT INTO visits (id, project_id, user_id) VALUES (1, 10, 'ann'), (2, 20, 'ann')")
				run(t, ann.DB, "INSERT INTO visit_notes (id, visit_id, user_id) VALUES (1, 1, 'ann')")
				if !tc.pending {
					mustSync(t, ann)
				}

				run(t, bob.DB, "DELETE FROM members WHERE id = 1")
				mustSync(t, bob)
				if tc.pending {
					_, err := ann.Sync(ctx)
					var se *dbsync.ScopeError
					want := []protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}, {Table: "visits", PK: "1"}}
					if !errors.As(err, &se) || !slices.Equal(sortedEntries(se.Entries), want) {
						t.Fatalf("ann's sync with a pending visit to a project she left: %v, want a ScopeError naming %v", err, want)
					}
					wantKeys(t, ann, "projects", "10", "20")
					if err := ann.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
				}
				for range 2 {
					mustSync(t, ann)
				}
				wantKeys(t, ann, "projects", "20")
				wantKeys(t, ann, "members")
				wantKeys(t, ann, "visits", "2")
				wantKeys(t, ann, "visit_notes")
				if n := pendingCount(t, ann); n != 0 {
					t.Fatalf("ann holds %d pending operations, want none (the rows left unlogged)", n)
				}
				// The server keeps what ann pushed.
				want := []string{"1", "2"}
				if tc.pending {
					want = []string{"2"}
				}
				if got := keys(t, srv.DB, "visits"); !slices.Equal(got, want) {
					t.Fatalf("server visits %v, want %v", got, want)
				}
			})
		}
	}
}

// sortedEntries returns entries sorted by table and key.
func sortedEntries(entries []protocol.ScopeEntry) []protocol.ScopeEntry {
	out := slices.Clone(entries)
	slices.SortFunc(out, func(a, b protocol.ScopeEntry) int {
		if a.Table != b.Table {
			if a.Table < b.Table {
				return -1
			}
			return 1
		}
		if a.PK < b.PK {
			return -1
		}
		if a.PK > b.PK {
			return 1
		}
		return 0
	})
	return out
}

// TestScopeResetTakesPushedRows, servers and nodes of both dialects: as
// TestScopeOutTakesPushedRows, but the member's node is offline past the
// trim when it is removed from the project, so its Sync resets. The
// server no longer sends the project, and the reset deletes it with the
// visit and the note the node pushed (unlogged; the server keeps them).
// Before, the reset failed for good with a foreign key error (the visit
// referencing the deleted project), and with it every Sync.
func TestScopeResetTakesPushedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			srv, bob, ann := visitWorld(t, kind, &server.Config{Now: clk.Now, ClockSkew: 1000 * time.Hour, NodeHorizon: 24 * time.Hour})
			run(t, ann.DB, "INSERT INTO visits (id, project_id, user_id) VALUES (1, 10, 'ann'), (2, 20, 'ann')")
			run(t, ann.DB, "INSERT INTO visit_notes (id, visit_id, user_id) VALUES (1, 1, 'ann')")
			mustSync(t, ann)

			// Ann is offline: bob removes her, and writes on past the
			// horizon; the trim leaves her node behind.
			run(t, bob.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, bob)
			clk.Advance(25 * time.Hour)
			run(t, bob.DB, "UPDATE projects SET name = 'later' WHERE id = 10")
			mustSync(t, bob)
			run(t, bob.DB, "UPDATE projects SET name = 'later still' WHERE id = 10")
			mustSync(t, bob)
			if tr, err := srv.Srv.Trim(ctx); err != nil || tr.RetiredNodes == 0 {
				t.Fatalf("trim %+v %v", tr, err)
			}

			res, err := ann.Sync(ctx)
			if err != nil {
				t.Fatalf("ann's sync past the trim: %v", err)
			}
			if res.Reset == nil {
				t.Fatalf("ann's sync did not reset: %+v", res)
			}
			mustSync(t, ann)
			wantKeys(t, ann, "projects", "20")
			wantKeys(t, ann, "members")
			wantKeys(t, ann, "visits", "2")
			wantKeys(t, ann, "visit_notes")
			if n := pendingCount(t, ann); n != 0 {
				t.Fatalf("ann holds %d pending operations, want none", n)
			}
			if got := keys(t, srv.DB, "visits"); !slices.Equal(got, []string{"1", "2"}) {
				t.Fatalf("server visits %v, want [1 2]", got)
			}
		})
	}
}

// TestScopeRepairTakesPushedRows, servers and nodes of both dialects: as
// TestScopeOutTakesPushedRows, but the member's node repairs after it is
// removed from the project. The repair does not bring the project back,
// and the visit and the note the node pushed go with it (unlogged; the
// server keeps them). Before, a PostgreSQL node's repair failed for good
// on the visit's foreign key, and a SQLite node's kept the visit
// referencing the missing project.
func TestScopeRepairTakesPushedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, bob, ann := visitWorld(t, kind, nil)
			run(t, ann.DB, "INSERT INTO visits (id, project_id, user_id) VALUES (1, 10, 'ann'), (2, 20, 'ann')")
			run(t, ann.DB, "INSERT INTO visit_notes (id, visit_id, user_id) VALUES (1, 1, 'ann'), (2, 2, 'ann')")
			mustSync(t, ann)
			run(t, bob.DB, "DELETE FROM members WHERE id = 1")
			mustSync(t, bob)

			if _, err := ann.Repair(ctx, nil); err != nil {
				t.Fatalf("ann's repair: %v", err)
			}
			wantKeys(t, ann, "projects", "20")
			wantKeys(t, ann, "members")
			wantKeys(t, ann, "visits", "2")
			wantKeys(t, ann, "visit_notes", "2")
			if n := pendingCount(t, ann); n != 0 {
				t.Fatalf("ann holds %d pending operations, want none", n)
			}
			mustSync(t, ann)
			if got := keys(t, srv.DB, "visits"); !slices.Equal(got, []string{"1", "2"}) {
				t.Fatalf("server visits %v, want [1 2]", got)
			}
		})
	}
}

// TestScopeRepairPendingPushedRows, servers and nodes of both dialects:
// as TestScopeRepairTakesPushedRows, but the rows of push-only tables
// referencing the project the repair does not bring back (ann left it, or
// bob deleted it) are not pushed yet: a visit and its note, or a note on
// a pushed visit. They can never be pushed (their project is gone for
// ann), and a repair cannot keep them (they would reference a missing
// row). Without Force the repair is refused, nothing applied, with
// dbsync.ErrPendingChanges and a *dbsync.ScopeError naming them, children
// first, for DiscardPending; the repair after it goes through. With Force
// they are discarded, counted in RepairResult.Discarded. Before, a SQLite
// node's repair kept them referencing the missing project, and a
// PostgreSQL node's failed on the visit's foreign key, with or without
// Force, until the node pushed (refused) and gave them up.
func TestScopeRepairPendingPushedRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name         string
			gone         string // bob's SQL that takes project 10 from ann
			pushedVisit  bool   // visit 1 is pushed, only its note is pending
			force        bool
			want         []protocol.ScopeEntry // named, children first
			serverVisits []string              // after ann's next sync
		}{
			{"left", "DELETE FROM members WHERE id = 1", false, false,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}, {Table: "visits", PK: "1"}}, []string{"2"}},
			{"left/force", "DELETE FROM members WHERE id = 1", false, true,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}, {Table: "visits", PK: "1"}}, []string{"2"}},
			{"deleted", "DELETE FROM members WHERE id = 1; DELETE FROM projects WHERE id = 10", false, false,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}, {Table: "visits", PK: "1"}}, []string{"2"}},
			{"deleted/force", "DELETE FROM members WHERE id = 1; DELETE FROM projects WHERE id = 10", false, true,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}, {Table: "visits", PK: "1"}}, []string{"2"}},
			{"left/pushed visit", "DELETE FROM members WHERE id = 1", true, false,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}}, []string{"1", "2"}},
			{"left/pushed visit/force", "DELETE FROM members WHERE id = 1", true, true,
				[]protocol.ScopeEntry{{Table: "visit_notes", PK: "1"}}, []string{"1", "2"}},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv, bob, ann := visitWorld(t, kind, nil)
				wantKeys(t, ann, "projects", "10", "20")
				run(t, ann.DB, "INSERT INTO visits (id, project_id, user_id) VALUES (1, 10, 'ann'), (2, 20, 'ann')")
				if tc.pushedVisit {
					mustSync(t, ann)
				}
				run(t, ann.DB, "INSERT INTO visit_notes (id, visit_id, user_id) VALUES (1, 1, 'ann')")
				for _, q := range strings.Split(tc.gone, "; ") {
					run(t, bob.DB, q)
				}
				mustSync(t, bob)

				if tc.force {
					res, err := ann.Repair(ctx, &client.RepairOptions{Force: true})
					if err != nil {
						t.Fatalf("ann's repair with Force: %v", err)
					}
					if res.Discarded != len(tc.want) {
						t.Fatalf("ann's repair discarded %d operations, want %d (the inserts of %v)", res.Discarded, len(tc.want), tc.want)
					}
				} else {
					_, err := ann.Repair(ctx, nil)
					var se *dbsync.ScopeError
					if !errors.Is(err, dbsync.ErrPendingChanges) || !errors.As(err, &se) || !slices.Equal(se.Entries, tc.want) {
						t.Fatalf("ann's repair: %v, want ErrPendingChanges and a ScopeError naming %v", err, tc.want)
					}
					// Refused: nothing applied.
					wantKeys(t, ann, "projects", "10", "20")
					wantKeys(t, ann, "visit_notes", "1")
					if err := ann.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
					if _, err := ann.Repair(ctx, nil); err != nil {
						t.Fatalf("ann's repair after DiscardPending: %v", err)
					}
				}
				wantKeys(t, ann, "projects", "20")
				wantKeys(t, ann, "members")
				wantKeys(t, ann, "visits", "2")
				wantKeys(t, ann, "visit_notes")
				mustSync(t, ann)
				if n := pendingCount(t, ann); n != 0 {
					t.Fatalf("ann holds %d pending operations after her sync, want none", n)
				}
				if got := keys(t, srv.DB, "visits"); !slices.Equal(got, tc.serverVisits) {
					t.Fatalf("server visits %v, want %v", got, tc.serverVisits)
				}
				if got := keys(t, srv.DB, "visit_notes"); len(got) != 0 {
					t.Fatalf("server visit notes %v, want none", got)
				}
			})
		}
	}
}

// TestScopeRepairTakesReplyChains, servers and nodes of both dialects:
// a push-only table references a pulled one (a thread note's project) and
// itself (the note it replies to). Ann's note 1 is on the project she
// then leaves; notes 2 and 3, on her own project, reply to 1 and to 2.
// Her repair does not bring the project back: note 1 references a
// missing project, and once it goes note 2 references a missing note,
// and then note 3 — whichever of the table's two foreign keys the repair
// looks at first (the registry's order of a table's references is bun's
// map order), the whole chain goes, not only its first link or two.
// Pushed, they go unlogged (the server keeps them); not pushed, the
// repair is refused naming them children first, or Force discards them.
func TestScopeRepairTakesReplyChains(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name           string
			pushed, force  bool
			serverNotes    []string
			wantDiscarded  int
			wantRefusedFor []protocol.ScopeEntry
		}{
			{"pushed", true, false, []string{"1", "2", "3"}, 0, nil},
			{"pending", false, false, nil, 0,
				[]protocol.ScopeEntry{{Table: "thread_notes", PK: "3"}, {Table: "thread_notes", PK: "2"}, {Table: "thread_notes", PK: "1"}}},
			{"pending/force", false, true, nil, 3, nil},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv, bob, ann := visitWorld(t, kind, nil)
				run(t, ann.DB, "INSERT INTO thread_notes (id, project_id, reply_to_id, user_id) VALUES (1, 10, NULL, 'ann')")
				run(t, ann.DB, "INSERT INTO thread_notes (id, project_id, reply_to_id, user_id) VALUES (2, 20, 1, 'ann')")
				run(t, ann.DB, "INSERT INTO thread_notes (id, project_id, reply_to_id, user_id) VALUES (3, 20, 2, 'ann')")
				if tc.pushed {
					mustSync(t, ann)
				}
				run(t, bob.DB, "DELETE FROM members WHERE id = 1")
				mustSync(t, bob)

				res, err := ann.Repair(ctx, &client.RepairOptions{Force: tc.force})
				if tc.wantRefusedFor != nil {
					var se *dbsync.ScopeError
					if !errors.Is(err, dbsync.ErrPendingChanges) || !errors.As(err, &se) || !slices.Equal(se.Entries, tc.wantRefusedFor) {
						t.Fatalf("ann's repair: %v, want ErrPendingChanges and a ScopeError naming %v", err, tc.wantRefusedFor)
					}
					wantKeys(t, ann, "thread_notes", "1", "2", "3") // refused: nothing applied
					if err := ann.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
					res, err = ann.Repair(ctx, nil)
				}
				if err != nil {
					t.Fatalf("ann's repair: %v", err)
				}
				if res.Discarded != tc.wantDiscarded {
					t.Fatalf("ann's repair discarded %d operations, want %d", res.Discarded, tc.wantDiscarded)
				}
				wantKeys(t, ann, "projects", "20")
				wantKeys(t, ann, "thread_notes")
				mustSync(t, ann)
				if n := pendingCount(t, ann); n != 0 {
					t.Fatalf("ann holds %d pending operations after her sync, want none", n)
				}
				if got := keys(t, srv.DB, "thread_notes"); !slices.Equal(got, tc.serverNotes) {
					t.Fatalf("server thread notes %v, want %v", got, tc.serverNotes)
				}
			})
		}
	}
}

// visitWorld starts a server of the visit models (createScopeVisits)
// whose nodes are held to synctest.ScopeRules, visits and their notes
// owned by their user_id, with cfg's other settings, and two nodes of it:
// bob, who shares his project 10 with ann, and ann, who holds it and her
// own project 20; both synced.
func visitWorld(t *testing.T, kind string, cfg *server.Config) (srv *synctest.Server, bob, ann *synctest.Client) {
	t.Helper()
	rules := synctest.ScopeRules()
	rules["visits"] = server.OwnedBy("user_id")
	rules["visit_notes"] = server.OwnedBy("user_id")
	rules["thread_notes"] = server.OwnedBy("user_id")
	c := server.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.AuthorizeRegister, c.Scopes = synctest.BearerUser, rules
	mods := scopeVisitModels()
	srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, "scopevisits", createScopeVisits, mods), createScopeVisits, mods, &c)
	node := func(user string) *synctest.Client {
		return synctest.NewClientAs(t, srv, user, "Bearer "+user,
			synctest.ClientDB(t, kind, "scopevisits", createScopeVisits, mods), createScopeVisits, mods, nil)
	}
	bob, ann = node("bob"), node("ann")
	run(t, bob.DB, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'bob', 'shared')")
	run(t, bob.DB, "INSERT INTO members (id, project_id, user_id) VALUES (1, 10, 'ann')")
	mustSync(t, bob)
	run(t, ann.DB, "INSERT INTO projects (id, owner_id, name) VALUES (20, 'ann', 'own')")
	mustSync(t, ann)
	return srv, bob, ann
}
