package handlers_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// newScopedEnv returns an env on a server with scopes (the scoped test
// models and synctest.ScopeRules), whose node is bound to user ann.
func newScopedEnv(t testing.TB, kind string) *env {
	t.Helper()
	cfg := &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()}
	s := synctest.NewServerWith(t, synctest.ServerOn(t, kind, testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(), cfg)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(s.Srv, &handlers.Config{Registration: handlers.RateLimit{Every: -1}}))
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	resp, err := s.Srv.Register(ctx, &server.RegisterInfo{Credentials: "Bearer ann"})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, url: hs.URL + "/sync", node: resp.Node}
}

// mustPush pushes a body made by rawPush and fails unless it is applied.
func (e *env) mustPush(ops, payload string) {
	e.t.Helper()
	if status, raw, _ := e.push(e.rawPush(ops, payload)); status != http.StatusOK {
		e.t.Fatalf("push %s: %d %s", ops, status, raw)
	}
}

// stream checks the body of a 200 pull or repair answer: JSON lines that
// protocol.ParseMessage reads, the first a header, the last the end line,
// no error line.
func (e *env) stream(what string, raw []byte) []*protocol.Message {
	e.t.Helper()
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		e.t.Fatalf("%s: a stream not ended by a newline: %q", what, raw)
	}
	var msgs []*protocol.Message
	for _, line := range bytes.Split(raw[:len(raw)-1], []byte("\n")) {
		m, err := protocol.ParseMessage(line)
		if err != nil {
			e.t.Fatalf("%s: line %q: %v", what, line, err)
		}
		if m.Type == protocol.MsgError || (m.Type == protocol.MsgEnd) != (len(msgs) == bytes.Count(raw, []byte("\n"))-1) {
			e.t.Fatalf("%s: line %d of %d is %q", what, len(msgs)+1, bytes.Count(raw, []byte("\n")), line)
		}
		msgs = append(msgs, m)
	}
	if msgs[0].Type != protocol.MsgHeader || msgs[0].LatestVersionID == nil {
		e.t.Fatalf("%s: a stream that does not start with a header: %q", what, raw)
	}
	return msgs
}

// FuzzPullRequest fuzzes the body of a correctly signed POST /pull, to a
// server without scopes or, when scoped, to one with scopes. The server
// must never answer 5xx (nor panic), must answer errors as JSON without
// the database's text, must answer 200 with a well-formed stream, and a
// refused pull must write nothing (a pull may record the node's held
// version in sync_node_activity, which env.state leaves out). "$LATEST"
// (with its quotes) stands for the server's latest version, "$SCHEMA"
// for the text of its schema (a backfill of every column), $PUSH for a
// fresh push id.
func FuzzPullRequest(f *testing.F) {
	plain := newEnv(f, dbtest.KindSQLite, nil)
	const note = `"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"`
	plain.mustPush(`{"order":1,"table":"lists","row_id":"1","command":"i"},{"order":2,"table":"todos","row_id":"1","command":"i"}`,
		`"lists":[{"id":1,"name":"home"}],"todos":[{"id":1,"list_id":1,"title":"mail","done":false}]`)
	plain.mustPush(`{"order":3,"table":"notes","row_id":`+note+`,"command":"i"},{"order":4,"table":"todos","row_id":"1","command":"u"}`,
		`"notes":[{"id":`+note+`,"body":"b","created":"2024-01-01T00:00:00Z","data":"AAEC","score":1.5,"tag":"t","count":3,"meta":{"a":1}}],"todos":[{"id":1,"list_id":1,"title":"mail","done":true}]`)
	scoped := newScopedEnv(f, dbtest.KindSQLite)
	scoped.mustPush(`{"order":1,"table":"projects","row_id":"1","command":"i"},{"order":2,"table":"tasks","row_id":"1","command":"i"}`,
		`"projects":[{"id":1,"owner_id":"ann","name":"p"}],"tasks":[{"id":1,"project_id":1,"title":"t"}]`)
	for _, s := range []string{
		`{}`, `{"latest_version_id":null}`, `{"latest_version_id":0}`, `{"latest_version_id":1}`, `{"latest_version_id":"$LATEST"}`,
		`{"latest_version_id":0,"chunk_size":1}`, `{"latest_version_id":0,"chunk_size":-1}`, `{"latest_version_id":0,"chunk_size":9223372036854775807}`,
		`{"latest_version_id":0,"deleted":{"lists":["1"]}}`, `{"latest_version_id":0,"deleted":{}}`, `{"latest_version_id":0,"deleted":{"nope":["x"],"lists":[""]}}`,
		`{"latest_version_id":0,"deleted":{"notes":[` + note + `]},"chunk_size":1}`,
		`{"latest_version_id":"$LATEST","push_id":"$PUSH"}`, `{"latest_version_id":0,"push_id":"$PUSH","deleted":{"lists":["1"]}}`,
		`{"latest_version_id":"$LATEST","push_id":"x"}`, `{"latest_version_id":"$LATEST","push_id":"6D4F0A61-3C56-4AB4-9C39-5A0F1E1C1B3E"}`,
		`{"latest_version_id":"$LATEST","backfill":"$SCHEMA"}`, `{"latest_version_id":0,"backfill":"1;lists:i:id=int,name=string","chunk_size":1}`,
		`{"latest_version_id":0,"backfill":"1;todos:i:id=int,list_id=int","deleted":{"lists":["1"]}}`,
		`{"latest_version_id":"$LATEST","backfill":"junk"}`, `{"latest_version_id":"$LATEST","backfill":"1;nope:i:id=int"}`,
		`{"latest_version_id":0,"held":{}}`, `{"latest_version_id":0,"held":{"projects":[],"members":[],"tasks":[]}}`,
		`{"latest_version_id":0,"held":{"projects":["1","2"],"tasks":["1"],"members":[]},"deleted":{"projects":["1"]}}`,
		`{"latest_version_id":"$LATEST","held":{"projects":["01","1"],"tasks":["9"]},"push_id":"$PUSH"}`,
		`{"latest_version_id":0,"held":{"projects":["x"]}}`, `{"latest_version_id":0,"held":{"tags":["1"]}}`, `{"latest_version_id":0,"held":{"nope":[]}}`,
		`{"latest_version_id":0,"held":{"projects":null}}`, `{"latest_version_id":0,"held":{"projects":["-9223372036854775808","9223372036854775808"]}}`,
		`{"latest_version_id":-1}`, `{"latest_version_id":99999}`, `{"latest_version_id":9223372036854775807}`, `{"latest_version_id":1.5}`,
		`{"latest_version_id":"1"}`, `{"deleted":[]}`, `{"held":"x"}`, `{"push_id":5}`, `{"latest_version_id":0} trailing`, `{"latest_version_id":0}{}`,
		`{"latest_version_id":0,"latest_version_id":"$LATEST"}`, `{"unknown":1}`, `null`, `[]`, `{`, ``, " ", "\xff\xfe",
		`{"deleted":{"lists":["` + strings.Repeat("9", 400) + `"]}}`, `{"deleted":` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, withScopes bool) {
		e := plain
		if withScopes {
			e = scoped
		}
		e = e.with(t)
		body = bytes.ReplaceAll(body, []byte(`"$LATEST"`), []byte(strconv.FormatInt(e.latest(), 10)))
		body = bytes.ReplaceAll(body, []byte(`"$SCHEMA"`), []byte(strconv.Quote(e.s.Reg.NodeSchema().String())))
		body = bytes.ReplaceAll(body, []byte(`$PUSH`), []byte(uuid.NewString()))
		before := e.state()
		status, raw, d := e.do(e.request(http.MethodPost, "pull", "", body))
		switch {
		case status == http.StatusOK:
			e.stream("pull "+string(body), raw)
		case status >= 400 && status < 500:
			e.unchanged(before, "refused pull")
			dbtest.NoDatabaseText(t, "refused pull", d.Message)
		default:
			t.Fatalf("pull %q: %d %s", body, status, raw)
		}
	})
}
