package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

func newScopedFixture(t *testing.T, kind string) *fixture {
	t.Helper()
	return newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()},
		testmodels.CreateScoped, testmodels.Scoped()...)
}

func (f *fixture) registerAs(user string) node {
	f.t.Helper()
	resp, err := f.Srv.Register(ctx, &server.RegisterInfo{Credentials: "Bearer " + user})
	if err != nil {
		f.t.Fatalf("register %s: %v", user, err)
	}
	return node{id: resp.Node.NodeID, secret: resp.Node.Secret}
}

func rowJSON(fields map[string]any) json.RawMessage {
	b, _ := json.Marshal(fields)
	return b
}

func (p *push) project(cmd models.Command, id int64, owner, name string) *push {
	return p.op("projects", strconv.FormatInt(id, 10), cmd, rowJSON(map[string]any{"id": id, "owner_id": owner, "name": name}))
}

func (p *push) member(cmd models.Command, id, project int64, user string) *push {
	return p.op("members", strconv.FormatInt(id, 10), cmd, rowJSON(map[string]any{"id": id, "project_id": project, "user_id": user}))
}

func (p *push) task(cmd models.Command, id, project int64, title string) *push {
	return p.op("tasks", strconv.FormatInt(id, 10), cmd, rowJSON(map[string]any{"id": id, "project_id": project, "title": title}))
}

// TestScopeConfig: rules that do not fit the tracked tables are refused
// when the server is built.
func TestScopeConfig(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			if err := testmodels.CreateScoped(ctx, db); err != nil {
				t.Fatal(err)
			}
			reg, err := dbsync.Track(db, testmodels.Scoped()...)
			if err != nil {
				t.Fatal(err)
			}
			bad := map[string]func(server.Scopes){
				"undeclared table":    func(s server.Scopes) { delete(s, "tags") },
				"untracked table":     func(s server.Scopes) { s["nope"] = server.Global() },
				"unknown column":      func(s server.Scopes) { s["projects"] = server.OwnedBy("owner") },
				"not a foreign key":   func(s server.Scopes) { s["tasks"] = server.ThroughParent("title") },
				"no membership table": func(s server.Scopes) { s["projects"] = server.MemberOf("shares", "project_id", "user_id") },
				"no membership col":   func(s server.Scopes) { s["projects"] = server.MemberOf("members", "project", "user_id") },
				"global inside any":   func(s server.Scopes) { s["tags"] = server.AnyOf(server.Global()) },
				"zero rule":           func(s server.Scopes) { s["tags"] = server.Rule{} },
				"global read-only":    func(s server.Scopes) { s["tags"] = server.ReadOnly(server.Global()) },
				"read-only bad col":   func(s server.Scopes) { s["projects"] = server.ReadOnly(server.OwnedBy("owner")) },
			}
			for name, edit := range bad {
				rules := synctest.ScopeRules()
				edit(rules)
				_, err := server.New(ctx, db, reg, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules})
				if !errors.Is(err, server.ErrScopeConfig) {
					t.Errorf("%s: New: %v, want ErrScopeConfig", name, err)
				}
			}
			if _, err := server.New(ctx, db, reg, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()}); err != nil {
				t.Fatalf("valid rules: %v", err)
			}
		})
	}
}

// TestScopeWrites: a push touching rows outside the node's scope (insert,
// update, delete, re-parenting, giving a row away, a read-only table) is
// refused as a whole with a *dbsync.ScopeError naming the rows (a member
// taking a shared row over by its owner column too), and over
// HTTP with 403 out_of_scope; writes inside the scope, also to a project
// shared with the node, are applied.
//
// Chunked, every push is sent one operation per chunk: each check crosses
// chunks (a membership staged in one chunk opens no row of another), with
// the same outcome.
func TestScopeWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			name := kind
			if chunked {
				name += "/Chunked"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				scopeWrites(t, kind, chunked)
			})
		}
	}
}

func scopeWrites(t *testing.T, kind string, chunked bool) {
	f := newScopedFixture(t, kind)
	ann, bob, cid := f.registerAs("ann"), f.registerAs("bob"), f.registerAs("cid")
	pushFn := func(n node, p *push) error {
		if chunked {
			_, err := f.commitChunked(n, &p.req)
			return err
		}
		_, err := f.Srv.Push(ctx, n.id, &p.req)
		return err
	}
	ok := func(n node, p *push) {
		t.Helper()
		if err := pushFn(n, p); err != nil {
			t.Fatalf("push: %v", err)
		}
	}
	ok(ann, newPush(nil).project(models.Insert, 1, "ann", "ann's").member(models.Insert, 1, 1, "bob").task(models.Insert, 1, 1, "shared task"))
	ok(ann, newPush(ptr(1)).project(models.Insert, 2, "ann", "private").task(models.Insert, 2, 2, "private task"))
	ok(cid, newPush(ptr(2)).project(models.Insert, 3, "cid", "cid's"))
	// bob is a member of project 1: he writes its tasks.
	ok(bob, newPush(ptr(3)).task(models.Update, 1, 1, "edited by bob").task(models.Insert, 4, 1, "bob's task"))

	refused := []struct {
		name string
		n    node
		p    *push
		want []protocol.ScopeEntry
	}{
		{"insert into another's project", bob, newPush(ptr(4)).task(models.Insert, 5, 2, "sneak"), []protocol.ScopeEntry{{Table: "tasks", PK: "5"}}},
		{"insert a project for another", bob, newPush(ptr(4)).project(models.Insert, 9, "ann", "fake"), []protocol.ScopeEntry{{Table: "projects", PK: "9"}}},
		{"update another's row", cid, newPush(ptr(4)).task(models.Update, 2, 2, "x"), []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
		{"insert over another's key", cid, newPush(ptr(4)).task(models.Insert, 2, 3, "x"), []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
		{"delete another's row", bob, newPush(ptr(4)).del("projects", 2).del("tasks", 2), []protocol.ScopeEntry{{Table: "projects", PK: "2"}, {Table: "tasks", PK: "2"}}},
		{"re-parent out of scope", ann, newPush(ptr(4)).task(models.Update, 2, 3, "moved"), []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
		{"give a row away", ann, newPush(ptr(4)).project(models.Update, 2, "cid", "gift"), []protocol.ScopeEntry{{Table: "projects", PK: "2"}}},
		{"take a shared row over", bob, newPush(ptr(4)).project(models.Update, 1, "bob", "mine now"), []protocol.ScopeEntry{{Table: "projects", PK: "1"}}},
		{"add oneself to another's project", cid, newPush(ptr(4)).member(models.Insert, 7, 2, "cid"), []protocol.ScopeEntry{{Table: "members", PK: "7"}}},
		{"read-only table", ann, newPush(ptr(4)).op("tags", "1", models.Insert, rowJSON(map[string]any{"id": 1, "name": "t"})), []protocol.ScopeEntry{{Table: "tags", PK: "1"}}},
		{"one bad row among good ones", ann, newPush(ptr(4)).task(models.Insert, 6, 2, "fine").task(models.Update, 3, 3, "not mine"), nil},
		// Rows refused before the writes (a delete of another's row) and
		// after them (an insert under another's project) are named
		// together: one DiscardPending settles the push.
		{"rows refused before and after the writes", bob, newPush(ptr(4)).del("tasks", 2).task(models.Insert, 5, 2, "sneak"),
			[]protocol.ScopeEntry{{Table: "tasks", PK: "2"}, {Table: "tasks", PK: "5"}}},
		{"a membership opens no row of the push", cid, newPush(ptr(4)).member(models.Insert, 8, 2, "cid").task(models.Insert, 9, 2, "in"),
			[]protocol.ScopeEntry{{Table: "members", PK: "8"}, {Table: "tasks", PK: "9"}}},
	}
	for _, c := range refused {
		before := f.state()
		err := pushFn(c.n, c.p)
		var se *dbsync.ScopeError
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v, want a ScopeError", c.name, err)
		}
		if c.want != nil && !equalEntries(se.Entries, c.want) {
			t.Fatalf("%s: rows %+v, want %+v", c.name, se.Entries, c.want)
		}
		f.mustUnchanged(before, c.name)
	}

	// Over HTTP: 403 with the rows, nothing written.
	before := f.state()
	status, eb, _ := httpPush(t, f.Server, cid, &newPush(ptr(4)).del("tasks", 1).req)
	if status != http.StatusForbidden || eb.Error.Code != protocol.CodeOutOfScope ||
		!equalEntries(eb.Error.Rows, []protocol.ScopeEntry{{Table: "tasks", PK: "1"}}) {
		t.Fatalf("HTTP push out of scope: %d %+v", status, eb)
	}
	f.mustUnchanged(before, "HTTP push out of scope")

	// Ann removes bob from project 1: his writes to it are refused now.
	ok(ann, newPush(ptr(4)).del("members", 1))
	err := pushFn(bob, newPush(ptr(5)).task(models.Update, 1, 1, "too late"))
	if se := (*dbsync.ScopeError)(nil); !errors.As(err, &se) {
		t.Fatalf("push after membership revoked: %v, want a ScopeError", err)
	}
	if chunked && f.stagedKeys() != 0 {
		t.Fatalf("%d keys left staged after the refusals", f.stagedKeys())
	}
}

func equalEntries(a, b []protocol.ScopeEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func newFixtureWithSchema(t *testing.T, kind string, cfg *server.Config, schema func(context.Context, bun.IDB) error, models ...any) *fixture {
	t.Helper()
	return &fixture{t: t, kind: kind, Server: synctest.NewServerWith(t, synctest.ServerOn(t, kind, schema, models), schema, models, cfg)}
}

// repairKeys runs Repair for a node and returns the keys of each table's
// rows.
func repairKeys(t *testing.T, f *fixture, n node) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := f.Srv.Repair(ctx, n.id, func(m *protocol.Message) error {
		if m.Type != protocol.MsgRows {
			return nil
		}
		for _, raw := range m.Rows {
			var r struct {
				ID int64 `json:"id"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			out[m.Table] = append(out[m.Table], strconv.FormatInt(r.ID, 10))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	return out
}

// TestScopeReads: repair and query return the rows in the node's scope
// plus the parents their foreign keys need, and nothing else; global
// tables whole. Here a membership is the user's own row (OwnedBy), its
// project out of the user's scope but needed by it; the project's tasks
// (ThroughParent) stay out.
func TestScopeReads(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rules := server.Scopes{
				"projects": server.OwnedBy("owner_id"),
				"members":  server.OwnedBy("user_id"),
				"tasks":    server.ThroughParent("project_id"),
				"tags":     server.Global(),
			}
			f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules},
				testmodels.CreateScoped, testmodels.Scoped()...)
			ann, bob, anon := f.registerAs("ann"), f.registerAs("bob"), f.registerAs("nobody")
			for _, q := range []string{
				"INSERT INTO tags (id, name) VALUES (1, 't')",
				"INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'a'), (2, 'ann', 'b'), (3, 'bob', 'c')",
				"INSERT INTO members (id, project_id, user_id) VALUES (1, 1, 'bob'), (2, 3, 'ann')",
				"INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'z')",
			} {
				if _, err := f.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				name string
				n    node
				want map[string][]string
			}{
				{"ann", ann, map[string][]string{"tags": {"1"}, "projects": {"1", "2", "3"}, "members": {"2"}, "tasks": {"1", "2"}}},
				{"bob", bob, map[string][]string{"tags": {"1"}, "projects": {"1", "3"}, "members": {"1"}, "tasks": {"3"}}},
				{"a node without a principal", anon, map[string][]string{"tags": {"1"}}},
			} {
				got := repairKeys(t, f, c.n)
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Fatalf("%s repairs %v, want %v", c.name, got, c.want)
				}
				for table, keys := range c.want {
					resp, err := f.Srv.Query(ctx, c.n.id, &protocol.QueryRequest{Table: table})
					if err != nil || len(resp.Rows) != len(keys) {
						t.Fatalf("%s queries %s: %d rows, %v; want %d", c.name, table, len(resp.Rows), err, len(keys))
					}
				}
			}
		})
	}
}

// TestScopeHeldKeysNeeded: on a scoped server, a pull that does not list
// the rows the node holds, or lists them for some scoped tables only (a
// node whose last header named fewer: server.Config.Scopes changed) and
// says it asks again (held_retry), is refused over HTTP with 400
// held_keys_needed (nothing is sent); with them it streams, and its
// header names the scoped tables.
func TestScopeHeldKeysNeeded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			ann := f.registerAs("ann")
			for _, c := range []struct {
				body   string
				status int
				code   string // of a refusal; "": not checked
			}{
				{`{"latest_version_id":null}`, http.StatusBadRequest, protocol.CodeHeldKeysNeeded},
				{`{"latest_version_id":null,"held":{"nope":[]}}`, http.StatusBadRequest, ""},
				{`{"latest_version_id":null,"held":{"tasks":["x"]}}`, http.StatusBadRequest, ""},
				{`{"latest_version_id":null,"held":{"tasks":[]},"held_retry":true}`, http.StatusBadRequest, protocol.CodeHeldKeysNeeded},
				{`{"latest_version_id":null,"held":{"projects":[],"members":[]},"held_retry":true}`, http.StatusBadRequest, protocol.CodeHeldKeysNeeded},
				// A node of an earlier release (no held_retry) would ask
				// again the same: answered as before.
				{`{"latest_version_id":null,"held":{"tasks":[]}}`, http.StatusOK, ""},
				{`{"latest_version_id":null,"held":{"projects":[],"members":[]}}`, http.StatusOK, ""},
				{`{"latest_version_id":null,"held":{"projects":[],"members":[],"tasks":[]}}`, http.StatusOK, ""},
				{`{"latest_version_id":null,"held":{"projects":[],"members":[],"tasks":[],"tags":[]}}`, http.StatusOK, ""},
			} {
				resp, err := http.DefaultClient.Do(signedRequest(t, f.Server, ann, http.MethodPost, "pull", "", []byte(c.body)))
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("pull %s: %d %s, want %d", c.body, resp.StatusCode, raw, c.status)
				}
				if c.status == http.StatusOK {
					if !strings.Contains(string(raw), `"scoped":["projects","members","tasks"]`) {
						t.Fatalf("pull header without the scoped tables: %s", raw)
					}
					continue
				}
				var eb protocol.ErrorBody
				if err := json.Unmarshal(raw, &eb); err != nil {
					t.Fatalf("pull %s: %s", c.body, raw)
				}
				if c.code != "" && eb.Error.Code != c.code {
					t.Fatalf("pull %s: %s, want %s", c.body, raw, c.code)
				}
			}
		})
	}
}

// FuzzScopedPull fuzzes the body of a pull on a server with scopes (the
// held keys above all): it is answered or refused as a bad request, never
// with an internal error, and the stream holds only rows of the node's
// scope (here: none of project 2, another user's).
//
//	go test ./server -run '^$' -fuzz FuzzScopedPull -fuzztime 60s
func FuzzScopedPull(f *testing.F) {
	s := synctest.NewServerWith(f, dbtest.Open(f, dbtest.KindSQLite), testmodels.CreateScoped, testmodels.Scoped(),
		&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()})
	for _, q := range []string{
		"INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'a'), (2, 'bob', 'b')",
		"INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'x'), (2, 2, 'y')",
	} {
		if _, err := s.DB.ExecContext(ctx, q); err != nil {
			f.Fatal(err)
		}
	}
	resp, err := s.Srv.Register(ctx, &server.RegisterInfo{Credentials: "Bearer ann"})
	if err != nil {
		f.Fatal(err)
	}
	node := resp.Node.NodeID
	for _, seed := range []string{
		`{"held":{"projects":[],"tasks":[]}}`,
		`{"latest_version_id":1,"held":{"projects":["1","2"],"tasks":["2"],"members":["7"]}}`,
		`{"held":{"tags":["1"],"projects":["-0","01"," 1"]}}`,
		`{"held":{"nope":["1"]}}`,
		`{"held":{"projects":["99999999999999999999"]}}`,
		`{"latest_version_id":null}`,
		`{"held":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req protocol.PullRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		var lines []string
		err := s.Srv.Pull(ctx, node, &req, func(m *protocol.Message) error {
			b, err := protocol.AppendMessage(nil, m)
			lines = append(lines, string(b))
			return err
		})
		if err != nil {
			if code := dbsync.Code(err); code == protocol.CodeInternal {
				t.Fatalf("pull %s: internal error %v", body, err)
			}
			return
		}
		for _, l := range lines {
			if strings.Contains(l, `"owner_id":"bob"`) || strings.Contains(l, `"title":"y"`) {
				t.Fatalf("pull %s sent a row of another user's project: %s", body, l)
			}
		}
	})
}

// TestScopeGlobalWritable: a GlobalWritable table behaves as without
// scopes (every node reads and writes it); a Global one refuses writes.
func TestScopeGlobalWritable(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rules := synctest.ScopeRules()
			rules["tags"] = server.GlobalWritable()
			f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules},
				testmodels.CreateScoped, testmodels.Scoped()...)
			ann, bob := f.registerAs("ann"), f.registerAs("bob")
			tag := func(id int64, name string) json.RawMessage { return rowJSON(map[string]any{"id": id, "name": name}) }
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(nil).op("tags", "1", models.Insert, tag(1, "a")).req); err != nil {
				t.Fatalf("ann writes a tag: %v", err)
			}
			if _, err := f.Srv.Push(ctx, bob.id, &newPush(ptr(1)).op("tags", "1", models.Update, tag(1, "b")).req); err != nil {
				t.Fatalf("bob rewrites ann's tag: %v", err)
			}
			if got := repairKeys(t, f, bob); fmt.Sprint(got) != fmt.Sprint(map[string][]string{"tags": {"1"}}) {
				t.Fatalf("bob repairs %v", got)
			}
		})
	}
}

// TestScopeEndCounts: the end line of a scoped pull counts the keys of its
// scope_out lines and the rows of its scope_in lines.
func TestScopeEndCounts(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			ann := f.registerAs("ann")
			for _, q := range []string{
				"INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'a'), (2, 'bob', 'b')",
				"INSERT INTO tasks (id, project_id, title) VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 1, 'z')",
			} {
				if _, err := f.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			// ann holds bob's rows (they leave) and not hers (they arrive).
			msgs := mustPull(t, f.Srv, ann.id, &protocol.PullRequest{LatestVersionID: ptr(f.latest()),
				Held: map[string][]string{"projects": {"2"}, "tasks": {"2"}, "members": {}}})
			var out, in int64
			for _, m := range msgs {
				switch m.Type {
				case protocol.MsgScopeOut:
					out += int64(len(m.Keys))
				case protocol.MsgScopeIn:
					in += int64(len(m.Rows))
				}
			}
			end := msgs[len(msgs)-1]
			if out != 2 || in != 3 || end.Type != protocol.MsgEnd || end.ScopeOutCount != out || end.ScopeInCount != in {
				t.Fatalf("scope_out keys %d, scope_in rows %d (want 2 and 3); end %+v", out, in, end)
			}
		})
	}
}

// TestScopeReadOnly: a ReadOnly rule lets a node read rows (and their
// children) it may not write: bob, a read-only member of ann's project,
// repairs it and its tasks, and every write of his to them is refused,
// in one request or in chunks; ann still writes them.
func TestScopeReadOnly(t *testing.T) {
	t.Parallel()
	rules := server.Scopes{
		"projects": server.AnyOf(server.OwnedBy("owner_id"), server.ReadOnly(server.MemberOf("members", "project_id", "user_id"))),
		"members":  server.ThroughParent("project_id"),
		"tasks":    server.ThroughParent("project_id"),
		"tags":     server.Global(),
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: rules},
				testmodels.CreateScoped, testmodels.Scoped()...)
			ann, bob := f.registerAs("ann"), f.registerAs("bob")
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(nil).project(models.Insert, 1, "ann", "p").
				member(models.Insert, 1, 1, "bob").task(models.Insert, 1, 1, "t").req); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{"projects": {"1"}, "members": {"1"}, "tasks": {"1"}}
			if got := repairKeys(t, f, bob); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("bob repairs %v, want %v", got, want)
			}
			for _, c := range []struct {
				name string
				p    func() *push
				want []protocol.ScopeEntry
			}{
				{"update a task", func() *push { return newPush(ptr(1)).task(models.Update, 1, 1, "edited") }, []protocol.ScopeEntry{{Table: "tasks", PK: "1"}}},
				{"add a task", func() *push { return newPush(ptr(1)).task(models.Insert, 2, 1, "new") }, []protocol.ScopeEntry{{Table: "tasks", PK: "2"}}},
				{"rename the project", func() *push { return newPush(ptr(1)).project(models.Update, 1, "ann", "q") }, []protocol.ScopeEntry{{Table: "projects", PK: "1"}}},
				{"share it further", func() *push { return newPush(ptr(1)).member(models.Insert, 2, 1, "cid") }, []protocol.ScopeEntry{{Table: "members", PK: "2"}}},
				{"delete a task", func() *push { return newPush(ptr(1)).del("tasks", 1) }, []protocol.ScopeEntry{{Table: "tasks", PK: "1"}}},
			} {
				for _, chunked := range []bool{false, true} {
					before := f.state()
					var err error
					if chunked {
						_, err = f.commitChunked(bob, &c.p().req)
					} else {
						_, err = f.Srv.Push(ctx, bob.id, &c.p().req)
					}
					var se *dbsync.ScopeError
					if !errors.As(err, &se) || !equalEntries(se.Entries, c.want) {
						t.Fatalf("bob: %s (chunked %v): %v, want a ScopeError naming %v", c.name, chunked, err, c.want)
					}
					f.mustUnchanged(before, c.name)
				}
			}
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(ptr(1)).task(models.Update, 1, 1, "ann's edit").req); err != nil {
				t.Fatalf("ann's write to her project: %v", err)
			}
		})
	}
}
