package e2e_test

// The remedies of stuck scoped nodes in their harder cases: DiscardPending
// taking the server's rows (with the rows they need), the refusal of a
// delete that rows the node does not hold reference, and D2 up chains on
// scope_in lines. Each of these states once failed every sync.

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestScopeDiscardRestoresDeletedParent: bob, offline, moves
// his task 5 out of his project 1 into ann's shared project 10, then
// deletes his (now empty) project 1. Ann revokes his membership. His push
// is refused naming task 5 (the move); S5 says DiscardPending gives the
// task the server's values. The server's task 5 references project 1,
// which bob deleted and has not pushed: DiscardPending brings it back and
// drops its delete (D2). Before, it failed on the foreign key, every time.
func TestScopeDiscardRestoresDeletedParent(t *testing.T) {
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
			// Offline: the move, then the delete of the emptied project.
			run(t, bob.DB, "UPDATE stuck_tasks SET project_id = 10 WHERE id = 5")
			run(t, bob.DB, "DELETE FROM stuck_projects WHERE id = 1")
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) {
				t.Fatalf("bob's push: %v, want a ScopeError", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatalf("DiscardPending(%v): %v", se.Entries, err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d after DiscardPending: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_projects", "1")
			var project int64
			if err := bob.DB.NewRaw("SELECT project_id FROM stuck_tasks WHERE id = 5").Scan(context.Background(), &project); err != nil || project != 1 {
				t.Fatalf("task 5 must be back in project 1: %d, %v", project, err)
			}
		})
	}
}

// TestScopeDiscardFetchesUnheldRow: bob's laptop creates a
// label and puts it on his task 5; his phone (not pulled since) moves task
// 5 into ann's project 10, whose membership ann revokes. The phone's push
// is refused naming task 5 (out_of_scope, before pull_needed);
// DiscardPending writes the server's task 5, which references the label
// the phone does not hold yet: the label comes with it.
func TestScopeDiscardFetchesUnheldRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newStuckServer(t, kind)
			ann, bob, bob2 := stuckClient(t, srv, "ann", "phone"), stuckClient(t, srv, "bob", "phone"), stuckClient(t, srv, "bob", "laptop")
			run(t, bob.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (1, 'bob', 'bob''s')")
			run(t, bob.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (5, 1, 'mine')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			mustSync(t, bob2)
			run(t, bob2.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (7, 'bob', 'red')")
			run(t, bob2.DB, "UPDATE stuck_tasks SET label_id = 7 WHERE id = 5")
			mustSync(t, bob2)
			run(t, bob.DB, "UPDATE stuck_tasks SET project_id = 10 WHERE id = 5")
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) {
				t.Fatalf("bob's push: %v, want a ScopeError", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatalf("DiscardPending(%v): %v", se.Entries, err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d after DiscardPending: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_labels", "7")
		})
	}
}

// A schema with a global writable table and a chain of references.
type r2Tag struct {
	bun.BaseModel `bun:"table:r2_tags"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type r2Folder struct {
	bun.BaseModel `bun:"table:r2_folders"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
}

type r2Doc struct {
	bun.BaseModel `bun:"table:r2_docs"`
	ID            int64     `bun:"id,pk,autoincrement"`
	OwnerID       string    `bun:"owner_id,notnull"`
	FolderID      int64     `bun:"folder_id,notnull"`
	Folder        *r2Folder `bun:"rel:belongs-to,join:folder_id=id,on_delete:CASCADE"`
}

type r2Project struct {
	bun.BaseModel `bun:"table:r2_projects"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
}

type r2Member struct {
	bun.BaseModel `bun:"table:r2_members"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	UserID        string     `bun:"user_id,notnull"`
	Project       *r2Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

type r2Note struct {
	bun.BaseModel `bun:"table:r2_notes"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	DocID         *int64     `bun:"doc_id"`
	TagID         *int64     `bun:"tag_id"`
	Project       *r2Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
	Doc           *r2Doc     `bun:"rel:belongs-to,join:doc_id=id"`
	Tag           *r2Tag     `bun:"rel:belongs-to,join:tag_id=id"`
}

func r2Models() []any {
	return []any{(*r2Tag)(nil), (*r2Folder)(nil), (*r2Doc)(nil), (*r2Project)(nil), (*r2Member)(nil), (*r2Note)(nil)}
}

func createR2(ctx context.Context, db bun.IDB) error {
	for _, m := range r2Models() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func newR2Server(t *testing.T, kind string) *synctest.Server {
	t.Helper()
	return synctest.NewServerWith(t, synctest.ServerDB(t, kind, "r2", createR2, r2Models()), createR2, r2Models(),
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{
			"r2_tags":     server.GlobalWritable(),
			"r2_folders":  server.OwnedBy("owner_id"),
			"r2_docs":     server.OwnedBy("owner_id"),
			"r2_projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("r2_members", "project_id", "user_id")),
			"r2_members":  server.ThroughParent("project_id"),
			"r2_notes":    server.ThroughParent("project_id"),
		}})
}

func r2Client(t *testing.T, srv *synctest.Server, user, device string) *synctest.Client {
	t.Helper()
	return synctest.NewClientAs(t, srv, user+"/"+device, "Bearer "+user, synctest.ClientSQLite(t, "r2", createR2, r2Models()), createR2, r2Models(), nil)
}

// TestScopeDiscardGlobalRowComesBack: bob deletes tag 1 of a
// GlobalWritable table, which a note of ann's project (out of bob's
// scope) references. The push is refused with a ScopeError naming tag 1;
// DiscardPending drops the delete and brings the row back from the
// server: the tag's table is global, no scope_in line would bring it.
func TestScopeDiscardGlobalRowComesBack(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newR2Server(t, kind)
			ann, bob := r2Client(t, srv, "ann", "phone"), r2Client(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO r2_tags (id, name) VALUES (1, 'urgent')")
			mustSync(t, bob)
			mustSync(t, ann)
			run(t, ann.DB, "INSERT INTO r2_projects (id, owner_id) VALUES (10, 'ann')")
			run(t, ann.DB, "INSERT INTO r2_notes (id, project_id, tag_id) VALUES (100, 10, 1)")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "r2_notes")
			run(t, bob.DB, "DELETE FROM r2_tags WHERE id = 1")
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "r2_tags", PK: "1"}) {
				t.Fatalf("bob's delete of a tag referenced out of his scope: %v, want a ScopeError naming r2_tags 1", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d after giving the delete up: %v", i, err)
				}
			}
			wantKeys(t, ann, "r2_tags", "1")
			wantKeys(t, bob, "r2_tags", "1")
		})
	}
}

// TestScopeInRestoresChain: bob's note (in ann's shared
// project) references his doc 1 in his folder 1. Ann revokes him; bob,
// offline, deletes his folder (the doc goes with it, cascade). Ann shares
// again: the note enters bob's scope (scope_in) referencing doc 1, which
// the line's payload restores (D2); but doc 1 references folder 1, which
// bob deleted too: the payload carries it as well, and it comes back.
func TestScopeInRestoresChain(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := newR2Server(t, kind)
			ann, bob := r2Client(t, srv, "ann", "phone"), r2Client(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO r2_folders (id, owner_id) VALUES (1, 'bob')")
			run(t, bob.DB, "INSERT INTO r2_docs (id, owner_id, folder_id) VALUES (1, 'bob', 1)")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO r2_projects (id, owner_id) VALUES (10, 'ann')")
			run(t, ann.DB, "INSERT INTO r2_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "INSERT INTO r2_notes (id, project_id, doc_id) VALUES (100, 10, 1)")
			mustSync(t, bob)
			mustSync(t, ann)
			run(t, ann.DB, "DELETE FROM r2_members WHERE id = 1000")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "r2_notes")
			run(t, bob.DB, "DELETE FROM r2_docs WHERE id = 1")
			run(t, bob.DB, "DELETE FROM r2_folders WHERE id = 1")
			run(t, ann.DB, "INSERT INTO r2_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
			mustSync(t, ann)
			if errs := syncs(bob, 3); errs[0] != nil || errs[1] != nil || errs[2] != nil {
				t.Fatalf("bob's syncs: %v", errs)
			}
			wantKeys(t, bob, "r2_notes", "100")
			wantKeys(t, bob, "r2_docs", "1")
			wantKeys(t, bob, "r2_folders", "1")
		})
	}
}

// A schema whose project membership is a server table dbsync does not
// track (MemberOf: "The membership table need not be tracked"): granting
// access makes no version.
type r3Label struct {
	bun.BaseModel `bun:"table:r3_labels"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
}

type r3Project struct {
	bun.BaseModel `bun:"table:r3_projects"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       string `bun:"owner_id,notnull"`
}

type r3Task struct {
	bun.BaseModel `bun:"table:r3_tasks"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	LabelID       *int64     `bun:"label_id"`
	Project       *r3Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
	Label         *r3Label   `bun:"rel:belongs-to,join:label_id=id"`
}

func r3Models() []any { return []any{(*r3Label)(nil), (*r3Project)(nil), (*r3Task)(nil)} }

func createR3(ctx context.Context, db bun.IDB) error {
	for _, m := range r3Models() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeOrphanReadableChildPulls: bob labels a task of ann's
// project (access through an untracked membership table), loses access,
// deletes his label offline, and gets access back. The task referencing
// the label is readable again but not held: the push is answered
// pull_needed (not push_rejected, which Sync would repeat forever), and
// the pull restores the label (D2 on the task's scope_in line).
func TestScopeOrphanReadableChildPulls(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			create := func(ctx context.Context, db bun.IDB) error {
				if err := createR3(ctx, db); err != nil {
					return err
				}
				_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS r3_access (project_id BIGINT NOT NULL, user_id TEXT NOT NULL)")
				return err
			}
			srv := synctest.NewServerWith(t, dbtest.Open(t, kind), create, r3Models(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{
					"r3_labels":   server.OwnedBy("owner_id"),
					"r3_projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("r3_access", "project_id", "user_id")),
					"r3_tasks":    server.ThroughParent("project_id"),
				}})
			cl := func(user string) *synctest.Client {
				return synctest.NewClientAs(t, srv, user+"/phone", "Bearer "+user, synctest.ClientSQLite(t, "r3", createR3, r3Models()), createR3, r3Models(), nil)
			}
			ann, bob := cl("ann"), cl("bob")
			run(t, bob.DB, "INSERT INTO r3_labels (id, owner_id) VALUES (1, 'bob')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO r3_projects (id, owner_id) VALUES (10, 'ann')")
			run(t, ann.DB, "INSERT INTO r3_tasks (id, project_id) VALUES (100, 10)")
			mustSync(t, ann)
			run(t, srv.DB, "INSERT INTO r3_access (project_id, user_id) VALUES (10, 'bob')")
			mustSync(t, bob)
			wantKeys(t, bob, "r3_tasks", "100")
			run(t, bob.DB, "UPDATE r3_tasks SET label_id = 1 WHERE id = 100")
			mustSync(t, bob)
			run(t, srv.DB, "DELETE FROM r3_access")
			mustSync(t, bob)
			wantKeys(t, bob, "r3_tasks")
			run(t, bob.DB, "DELETE FROM r3_labels WHERE id = 1")
			run(t, srv.DB, "INSERT INTO r3_access (project_id, user_id) VALUES (10, 'bob')")
			errs := syncs(bob, 3)
			for i, err := range errs {
				if err != nil {
					_, perr := bob.Pull(ctx)
					t.Fatalf("bob sync %d: %v (all: %v); an explicit Pull: %v", i, err, errs, perr)
				}
			}
			wantKeys(t, bob, "r3_tasks", "100")
			wantKeys(t, bob, "r3_labels", "1")
		})
	}
}

// TestScopeOrphanAfterCascade: bob deletes his folder; his doc
// goes with it (ON DELETE CASCADE, logged). A note of ann's project, out
// of bob's scope, references the doc: the push is refused with a
// ScopeError naming the doc, and bob gives that delete up
// (DiscardPending), as the refusal asks. The folder's delete stays
// pending, and the doc, on the server, references the folder: the next
// push is answered pull_needed, and the pull brings the doc and the
// folder back.
func TestScopeOrphanAfterCascade(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newR2Server(t, kind)
			ann, bob := r2Client(t, srv, "ann", "phone"), r2Client(t, srv, "bob", "phone")
			run(t, bob.DB, "INSERT INTO r2_folders (id, owner_id) VALUES (1, 'bob')")
			run(t, bob.DB, "INSERT INTO r2_docs (id, owner_id, folder_id) VALUES (1, 'bob', 1)")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO r2_projects (id, owner_id) VALUES (10, 'ann')")
			run(t, ann.DB, "INSERT INTO r2_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "INSERT INTO r2_notes (id, project_id, doc_id) VALUES (100, 10, 1)")
			mustSync(t, bob)
			mustSync(t, ann)
			run(t, ann.DB, "DELETE FROM r2_members WHERE id = 1000")
			mustSync(t, ann)
			mustSync(t, bob)
			wantKeys(t, bob, "r2_notes")
			run(t, bob.DB, "DELETE FROM r2_folders WHERE id = 1")
			wantKeys(t, bob, "r2_docs") // the cascade
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "r2_docs", PK: "1"}) {
				t.Fatalf("bob's delete of a doc referenced out of his scope: %v, want a ScopeError naming r2_docs 1", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			if errs := syncs(bob, 3); errs[0] != nil || errs[1] != nil || errs[2] != nil {
				_, perr := bob.Pull(ctx)
				t.Fatalf("bob's syncs after giving the delete up: %v; an explicit Pull: %v", errs, perr)
			}
			wantKeys(t, bob, "r2_docs", "1")
			wantKeys(t, bob, "r2_folders", "1")
		})
	}
}

// TestScopeOrphanOutOfScopeChunked: the out_of_scope refusal of an
// orphaning delete, on a chunked push (one operation per request).
func TestScopeOrphanOutOfScopeChunked(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := newStuckServer(t, kind)
			ann := stuckClient(t, srv, "ann", "phone")
			bob := synctest.NewClientAs(t, srv, "bob/phone", "Bearer bob", synctest.ClientSQLite(t, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), &client.Config{PushChunkOperations: 1})
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
			mustSync(t, bob)
			run(t, ann.DB, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann''s')")
			run(t, ann.DB, "INSERT INTO stuck_tasks (id, project_id, title) VALUES (100, 10, 't')")
			run(t, ann.DB, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "UPDATE stuck_tasks SET label_id = 1 WHERE id = 100")
			mustSync(t, bob)
			run(t, ann.DB, "DELETE FROM stuck_members WHERE id = 1000")
			mustSync(t, ann)
			mustSync(t, bob)
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (2, 'bob', 'blue')")
			run(t, bob.DB, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (3, 'bob', 'green')")
			run(t, bob.DB, "DELETE FROM stuck_labels WHERE id = 1")
			_, err := bob.Sync(ctx)
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != (protocol.ScopeEntry{Table: "stuck_labels", PK: "1"}) {
				t.Fatalf("chunked push: %v, want a ScopeError naming stuck_labels 1", err)
			}
			if err := bob.DiscardPending(ctx, se.Entries); err != nil {
				t.Fatal(err)
			}
			for i, err := range syncs(bob, 2) {
				if err != nil {
					t.Fatalf("bob sync %d: %v", i, err)
				}
			}
			wantKeys(t, bob, "stuck_labels", "1", "2", "3")
		})
	}
}
