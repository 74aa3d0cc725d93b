package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// scopedCaseNote is a scoped row with a text key whose collation ignores
// case (SQLite's NOCASE, a nondeterministic ICU collation on PostgreSQL):
// a note of a project, in scope through it.
type scopedCaseNote struct {
	bun.BaseModel `bun:"table:case_notes"`

	Code      string              `bun:"code,pk"`
	ProjectID int64               `bun:"project_id,notnull"`
	Body      string              `bun:"body,notnull"`
	Project   *testmodels.Project `bun:"rel:belongs-to,join:project_id=id"`
}

func createCaseNotes(ctx context.Context, db bun.IDB) error {
	if err := testmodels.CreateScoped(ctx, db); err != nil {
		return err
	}
	qs := []string{"CREATE TABLE IF NOT EXISTS case_notes (code TEXT COLLATE NOCASE PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES projects (id), body TEXT NOT NULL)"}
	if db.Dialect().Name() == dialect.PG {
		qs = []string{
			"CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
			"CREATE TABLE IF NOT EXISTS case_notes (code TEXT COLLATE case_insensitive PRIMARY KEY, project_id BIGINT NOT NULL REFERENCES projects (id), body TEXT NOT NULL)",
		}
	}
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeCaseInsensitiveKeys: under a text key's collation that
// ignores case, the key "ABC" names another user's row "abc". A push of
// a delete or an update of "ABC" by a node that may not write "abc" is
// refused naming "ABC", over HTTP, whole and chunked, and nothing is
// written. Before, the check before the writes looked for the rows by
// their own spelling, found none, and the delete went through: any node
// could delete another user's rows by spelling their keys otherwise.
func TestScopeCaseInsensitiveKeys(t *testing.T) {
	t.Parallel()
	rules := synctest.ScopeRules()
	rules["case_notes"] = server.ThroughParent("project_id")
	mods := append(testmodels.Scoped(), (*scopedCaseNote)(nil))
	note := func(p *push, cmd models.Command, code string, project int64, body string) *push {
		if cmd == models.Delete {
			return p.op("case_notes", code, cmd, nil)
		}
		return p.op("case_notes", code, cmd, rowJSON(map[string]any{"code": code, "project_id": project, "body": body}))
	}
	for _, kind := range dbtest.Kinds {
		for _, cmd := range []models.Command{models.Delete, models.Update} {
			for _, chunked := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/chunked=%v", kind, cmd, chunked), func(t *testing.T) {
					t.Parallel()
					f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, createCaseNotes, mods...)
					ann, bob := f.registerAs("ann"), f.registerAs("bob")
					if err := f.pushFn(ann, false)(newPush(nil).project(models.Insert, 1, "ann", "ann's")); err != nil {
						t.Fatal(err)
					}
					if err := f.pushFn(bob, false)(note(newPush(ptr(f.latest())).project(models.Insert, 2, "bob", "bob's"), models.Insert, "abc", 2, "bob's secret")); err != nil {
						t.Fatal(err)
					}
					before := f.state()
					p := note(newPush(ptr(f.latest())), cmd, "ABC", 1, "ann's now")
					var status int
					var raw []byte
					if chunked {
						bodies := chunksOf(t, &p.req, 1)
						for _, b := range bodies {
							if st, raw, _ := httpCall(t, f.Server, ann, http.MethodPost, "push-chunk", "", b); st != http.StatusOK {
								t.Fatalf("stage a chunk: %d %s", st, raw)
							}
						}
						commit, err := json.Marshal(commitOf(&p.req, bodies))
						if err != nil {
							t.Fatal(err)
						}
						status, raw, _ = httpCall(t, f.Server, ann, http.MethodPost, "push-commit", "", commit)
					} else {
						body, err := json.Marshal(&p.req)
						if err != nil {
							t.Fatal(err)
						}
						status, raw, _ = httpCall(t, f.Server, ann, http.MethodPost, "push", "", body)
					}
					var eb protocol.ErrorBody
					if err := json.Unmarshal(raw, &eb); err != nil {
						t.Fatalf("answer %d %s: %v", status, raw, err)
					}
					want := []protocol.ScopeEntry{{Table: "case_notes", PK: "ABC"}}
					if status != http.StatusForbidden || eb.Error.Code != protocol.CodeOutOfScope || !slices.Equal(eb.Error.Rows, want) {
						t.Fatalf("ann's %s of ABC (bob's abc): %d %s, want 403 out_of_scope naming %v", cmd, status, raw, want)
					}
					f.mustUnchanged(before, "the refused push")
				})
			}
		}
	}
}

// caseFolder is a scoped row with a text key whose collation ignores
// case, owned by a user; caseDoc, a user's row referencing one.
type caseFolder struct {
	bun.BaseModel `bun:"table:case_folders"`

	Code    string `bun:"code,pk"`
	OwnerID string `bun:"owner_id,notnull"`
	Name    string `bun:"name,notnull"`
}

type caseDoc struct {
	bun.BaseModel `bun:"table:case_docs"`

	ID         int64       `bun:"id,pk,autoincrement"`
	OwnerID    string      `bun:"owner_id,notnull"`
	FolderCode string      `bun:"folder_code,notnull"`
	Folder     *caseFolder `bun:"rel:belongs-to,join:folder_code=code"`
}

func createCaseFolders(ctx context.Context, db bun.IDB) error {
	coll := "NOCASE"
	if db.Dialect().Name() == dialect.PG {
		if _, err := db.ExecContext(ctx, "CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"); err != nil {
			return err
		}
		coll = "case_insensitive"
	}
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS case_folders (code TEXT COLLATE " + coll + " PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS case_docs (id BIGINT PRIMARY KEY, owner_id TEXT NOT NULL, folder_code TEXT NOT NULL REFERENCES case_folders (code))",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestScopeCaseInsensitiveRefs: under a text key's collation that
// ignores case, a reference to "ABC" is one to another user's row "abc".
// A push setting a reference of a node's own row to "ABC", where the
// node may not read "abc", is refused naming the node's row, over HTTP,
// whole and chunked, nothing written, and the node's pulls carry nothing
// of "abc". Before, the check of new references looked the row up by its
// own spelling, found none, and let the reference through: the node's
// next pull brought the other user's row, values and all.
func TestScopeCaseInsensitiveRefs(t *testing.T) {
	t.Parallel()
	rules := server.Scopes{"case_folders": server.OwnedBy("owner_id"), "case_docs": server.OwnedBy("owner_id")}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", kind, chunked), func(t *testing.T) {
				t.Parallel()
				f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, createCaseFolders,
					(*caseFolder)(nil), (*caseDoc)(nil))
				ann, bob := f.registerAs("ann"), f.registerAs("bob")
				folder := newPush(nil).op("case_folders", "abc", models.Insert, rowJSON(map[string]any{"code": "abc", "owner_id": "bob", "name": "bob's secret"}))
				if err := f.pushFn(bob, false)(folder); err != nil {
					t.Fatal(err)
				}
				before := f.state()
				p := newPush(ptr(f.latest())).op("case_docs", "1", models.Insert, rowJSON(map[string]any{"id": 1, "owner_id": "ann", "folder_code": "ABC"}))
				var status int
				var raw []byte
				if chunked {
					bodies := chunksOf(t, &p.req, 1)
					for _, b := range bodies {
						if st, raw, _ := httpCall(t, f.Server, ann, http.MethodPost, "push-chunk", "", b); st != http.StatusOK {
							t.Fatalf("stage a chunk: %d %s", st, raw)
						}
					}
					commit, err := json.Marshal(commitOf(&p.req, bodies))
					if err != nil {
						t.Fatal(err)
					}
					status, raw, _ = httpCall(t, f.Server, ann, http.MethodPost, "push-commit", "", commit)
				} else {
					body, err := json.Marshal(&p.req)
					if err != nil {
						t.Fatal(err)
					}
					status, raw, _ = httpCall(t, f.Server, ann, http.MethodPost, "push", "", body)
				}
				var eb protocol.ErrorBody
				if err := json.Unmarshal(raw, &eb); err != nil {
					t.Fatalf("answer %d %s: %v", status, raw, err)
				}
				want := []protocol.ScopeEntry{{Table: "case_docs", PK: "1"}}
				if status != http.StatusForbidden || eb.Error.Code != protocol.CodeOutOfScope || !slices.Equal(eb.Error.Rows, want) {
					t.Fatalf("ann's doc referencing ABC (bob's abc): %d %s, want 403 out_of_scope naming %v", status, raw, want)
				}
				f.mustUnchanged(before, "the refused push")
				body, err := json.Marshal(&protocol.PullRequest{LatestVersionID: ptr(0), Held: map[string][]string{"case_folders": {}, "case_docs": {}}})
				if err != nil {
					t.Fatal(err)
				}
				status, raw, _ = httpCall(t, f.Server, ann, http.MethodPost, "pull", "", body)
				if status != http.StatusOK || strings.Contains(string(raw), "secret") {
					t.Fatalf("ann's pull: %d %s, want 200 without bob's folder", status, raw)
				}
			})
		}
	}
}

// TestScopeCaseInsensitiveOwnRow: under a text key's collation that
// ignores case, a node writing its own row "abc" under another spelling
// of its key ("ABC") is refused 409 push_rejected naming the server's
// spelling, over HTTP, whole and chunked, nothing written: accepted, the
// write would leave the row "abc" and log "ABC", which the node's other
// devices, holding "abc", would never get (their pulls find no such
// row). A delete under another spelling is accepted; a write that moves
// the row out of the node's scope is refused out_of_scope. Before, the
// write was refused 403 out_of_scope, which tells the node its own row
// is not its own.
func TestScopeCaseInsensitiveOwnRow(t *testing.T) {
	t.Parallel()
	rules := synctest.ScopeRules()
	rules["case_notes"] = server.ThroughParent("project_id")
	mods := append(testmodels.Scoped(), (*scopedCaseNote)(nil))
	note := func(p *push, cmd models.Command, code string, project int64, body string) *push {
		if cmd == models.Delete {
			return p.op("case_notes", code, cmd, nil)
		}
		return p.op("case_notes", code, cmd, rowJSON(map[string]any{"code": code, "project_id": project, "body": body}))
	}
	const outOfScope, respelled = "out of scope", "respelled"
	cases := []struct {
		name    string
		cmd     models.Command
		code    string
		project int64
		// want: the notes after the push, or the refusal.
		want string
	}{
		{name: "update abc", cmd: models.Update, code: "abc", project: 1, want: "abc:1:ann's now"},
		{name: "update ABC", cmd: models.Update, code: "ABC", project: 1, want: respelled},
		{name: "insert aBc", cmd: models.Insert, code: "aBc", project: 1, want: respelled},
		{name: "delete ABC", cmd: models.Delete, code: "ABC", project: 1, want: "none"},
		// Moved to bob's project: out of ann's scope, whatever the spelling.
		{name: "move abc", cmd: models.Update, code: "abc", project: 2, want: outOfScope},
		{name: "move ABC", cmd: models.Update, code: "ABC", project: 2, want: outOfScope},
	}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/chunked=%v/%s", kind, chunked, c.name), func(t *testing.T) {
					t.Parallel()
					f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules}, createCaseNotes, mods...)
					ann, phone, bob := f.registerAs("ann"), f.registerAs("ann"), f.registerAs("bob")
					if err := f.pushFn(bob, false)(newPush(nil).project(models.Insert, 2, "bob", "bob's")); err != nil {
						t.Fatal(err)
					}
					if err := f.pushFn(ann, false)(note(newPush(ptr(f.latest())).project(models.Insert, 1, "ann", "ann's"), models.Insert, "abc", 1, "ann's note")); err != nil {
						t.Fatal(err)
					}
					before, held := f.state(), f.latest()
					status, raw, code := sendPush(t, f, ann, note(newPush(ptr(f.latest())), c.cmd, c.code, c.project, "ann's now"), chunked)
					switch c.want {
					case outOfScope:
						var eb protocol.ErrorBody
						if err := json.Unmarshal(raw, &eb); err != nil {
							t.Fatalf("answer %d %s: %v", status, raw, err)
						}
						want := []protocol.ScopeEntry{{Table: "case_notes", PK: c.code}}
						if status != http.StatusForbidden || code != protocol.CodeOutOfScope || !slices.Equal(eb.Error.Rows, want) {
							t.Fatalf("ann's %s: %d %s, want 403 out_of_scope naming %v", c.name, status, raw, want)
						}
						f.mustUnchanged(before, "the refused push")
						return
					case respelled:
						var eb protocol.ErrorBody
						if err := json.Unmarshal(raw, &eb); err != nil {
							t.Fatalf("answer %d %s: %v", status, raw, err)
						}
						want := fmt.Sprintf("writes case_notes %q, which the server holds as %q", c.code, "abc")
						if status != http.StatusConflict || code != protocol.CodePushRejected || !strings.Contains(eb.Error.Message, want) {
							t.Fatalf("ann's %s of her own note abc: %d %s, want 409 push_rejected saying it %s", c.name, status, raw, want)
						}
						f.mustUnchanged(before, "the refused push")
						return
					}
					if status != http.StatusOK {
						t.Fatalf("ann's %s of her own note abc: %d %s, want it accepted", c.name, status, raw)
					}
					var notes []scopedCaseNote
					if err := f.DB.NewSelect().Model(&notes).Order("code").Scan(ctx); err != nil {
						t.Fatal(err)
					}
					got := "none"
					for _, n := range notes {
						got = fmt.Sprintf("%s:%d:%s", n.Code, n.ProjectID, n.Body)
					}
					if len(notes) > 1 || got != c.want {
						t.Fatalf("ann's %s: notes %+v, want %s", c.name, notes, c.want)
					}
					// Ann's other device, holding the note, pulls the change.
					body, err := json.Marshal(&protocol.PullRequest{LatestVersionID: ptr(held), Held: map[string][]string{"projects": {"1"}, "members": {}, "tasks": {}, "case_notes": {"abc"}}})
					if err != nil {
						t.Fatal(err)
					}
					status, raw, _ = httpCall(t, f.Server, phone, http.MethodPost, "pull", "", body)
					wantIn := `"body":"ann's now"`
					if c.cmd == models.Delete {
						wantIn = `"abc"`
					}
					if status != http.StatusOK || !strings.Contains(string(raw), wantIn) {
						t.Fatalf("ann's phone's pull: %d %s, want 200 with %s", status, raw, wantIn)
					}
				})
			}
		}
	}
}
