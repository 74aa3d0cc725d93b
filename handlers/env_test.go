package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

var ctx = context.Background()

// env is a live server with a registered node, driven by raw HTTP.
type env struct {
	t    testing.TB
	s    *synctest.Server
	url  string // where the handlers are mounted
	node protocol.Node
}

type envConfig struct {
	server   *server.Config
	handlers *handlers.Config
	models   []any // default: the test models
	// middleware, if any, goes in front of the handlers (with handlers).
	middleware []func(http.Handler) http.Handler
	schema     func(context.Context, bun.IDB) error // default: testmodels.CreateSchema
}

func newEnv(t testing.TB, kind string, cfg *envConfig) *env {
	t.Helper()
	if cfg == nil {
		cfg = &envConfig{}
	}
	ms := cfg.models
	var db *bun.DB
	switch {
	case ms == nil && kind == dbtest.KindSQLite:
		// A copy of the file on which server.New installed the test
		// models (what synctest.NewServer starts from).
		ms, db = testmodels.All(), synctest.ServerSQLite(t, "testmodels", testmodels.CreateSchema, testmodels.All())
	case ms == nil:
		ms, db = testmodels.All(), dbtest.Open(t, kind)
	default:
		db = dbtest.Open(t, kind)
	}
	schema := cfg.schema
	if schema == nil {
		schema = testmodels.CreateSchema
	}
	s := synctest.NewServerWith(t, db, schema, ms, cfg.server)
	e := &env{t: t, s: s, url: s.URL}
	if cfg.handlers != nil {
		r := chi.NewRouter()
		r.Use(cfg.middleware...)
		r.Mount("/sync", handlers.New(s.Srv, cfg.handlers))
		hs := httptest.NewServer(r)
		t.Cleanup(hs.Close)
		e.url = hs.URL + "/sync"
	}
	status, raw := e.register(`{"extra_data":{"token":"open sesame"}}`)
	if status != http.StatusOK {
		t.Fatalf("register: %d %s", status, raw)
	}
	var rr protocol.RegisterResponse
	if err := json.Unmarshal(raw, &rr); err != nil {
		t.Fatal(err)
	}
	e.node = rr.Node
	return e
}

func (e *env) register(body string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/register", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, e.s.Reg.Fingerprint())
	status, raw, _ := e.do(req)
	return status, raw
}

// signing describes how a request is signed; options change it.
type signing struct {
	Signed   protocol.Signed
	Secret   string
	SendBody []byte // the body sent, when it differs from the signed one
	Unsigned bool   // no signature headers at all
	Header   func(http.Header)
	// Form2 signs the schema headers too (as set after Header), and
	// Tamper then changes the headers of the signed request.
	Form2  bool
	Tamper func(http.Header)
}

type opt func(*signing)

func withSecret(s string) opt            { return func(g *signing) { g.Secret = s } }
func withNode(id int64) opt              { return func(g *signing) { g.Signed.NodeID = id } }
func withNonce(n string) opt             { return func(g *signing) { g.Signed.Nonce = n } }
func withEndpoint(ep string) opt         { return func(g *signing) { g.Signed.Endpoint = ep } }
func withSignedQuery(q string) opt       { return func(g *signing) { g.Signed.Query = q } }
func withTime(tm time.Time) opt          { return func(g *signing) { g.Signed.Timestamp = tm.UnixMilli() } }
func withSentBody(b []byte) opt          { return func(g *signing) { g.SendBody = b } }
func unsigned() opt                      { return func(g *signing) { g.Unsigned = true } }
func withHeader(f func(http.Header)) opt { return func(g *signing) { g.Header = f } }
func form2() opt                         { return func(g *signing) { g.Form2 = true } }
func tamper(f func(http.Header)) opt     { return func(g *signing) { g.Tamper = f } }
func setHeader(k, v string) opt {
	return withHeader(func(h http.Header) {
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
	})
}

// request builds a signed request for the env's node.
func (e *env) request(method, endpoint, query string, body []byte, opts ...opt) *http.Request {
	e.t.Helper()
	u := e.url + "/" + endpoint
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	g := &signing{
		Signed: protocol.Signed{
			Endpoint: endpoint, Query: req.URL.Query().Encode(), NodeID: e.node.NodeID,
			Timestamp: time.Now().UnixMilli(), Nonce: protocol.NewNonce(), Body: body,
		},
		Secret: e.node.Secret,
	}
	for _, o := range opts {
		o(g)
	}
	send := body
	if g.SendBody != nil {
		send = g.SendBody
	}
	if send != nil {
		req.Body = io.NopCloser(bytes.NewReader(send))
		req.ContentLength = int64(len(send))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, e.s.Reg.Fingerprint())
	if !g.Unsigned {
		req.Header.Set(protocol.HeaderNode, strconv.FormatInt(g.Signed.NodeID, 10))
		req.Header.Set(protocol.HeaderTimestamp, strconv.FormatInt(g.Signed.Timestamp, 10))
		req.Header.Set(protocol.HeaderNonce, g.Signed.Nonce)
		req.Header.Set(protocol.HeaderSignature, g.Signed.Sign(g.Secret))
	}
	if g.Header != nil {
		g.Header(req.Header)
	}
	if g.Form2 {
		h := req.Header
		g.Signed.Headers = &protocol.SignedHeaders{Schema: h.Get(protocol.HeaderSchema),
			Tables: h.Get(protocol.HeaderTables), Nullable: h.Get(protocol.HeaderNullable)}
		h.Set(protocol.HeaderSignature, g.Signed.Sign(g.Secret))
		h.Set(protocol.HeaderSignatureForm, protocol.SignatureFormHeaders)
	}
	if g.Tamper != nil {
		g.Tamper(req.Header)
	}
	return req
}

// do sends a request; it returns the status, the body and, for an error
// status, the decoded error body (checked to be well formed).
func (e *env) do(req *http.Request) (int, []byte, protocol.ErrorDetail) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var d protocol.ErrorDetail
	if resp.StatusCode != http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			e.t.Fatalf("%s %s: error %d with Content-Type %q: %s", req.Method, req.URL.Path, resp.StatusCode, ct, raw)
		}
		var eb protocol.ErrorBody
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			e.t.Fatalf("%s %s: error %d with body %q (%v), want {\"error\":{\"code\",\"message\"}}", req.Method, req.URL.Path, resp.StatusCode, raw, err)
		}
		d = eb.Error
	}
	return resp.StatusCode, raw, d
}

// state is what a refused write must leave unchanged.
type state struct {
	Versions, Operations, Pushes, Nodes int64
	Dump                                map[string][]string
}

func (e *env) state() state {
	e.t.Helper()
	var s state
	for _, c := range []struct {
		model any
		n     *int64
	}{
		{(*models.Version)(nil), &s.Versions}, {(*models.Operation)(nil), &s.Operations},
		{(*models.Push)(nil), &s.Pushes}, {(*models.Node)(nil), &s.Nodes},
	} {
		n, err := e.s.DB.NewSelect().Model(c.model).Count(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		*c.n = int64(n)
	}
	s.Dump = synctest.Dump(e.t, e.s.DB, e.s.Reg)
	return s
}

func (e *env) unchanged(before state, what string) {
	e.t.Helper()
	after := e.state()
	if before.Versions != after.Versions || before.Operations != after.Operations || before.Pushes != after.Pushes || before.Nodes != after.Nodes {
		e.t.Fatalf("%s wrote: versions %d→%d, operations %d→%d, pushes %d→%d, nodes %d→%d", what,
			before.Versions, after.Versions, before.Operations, after.Operations, before.Pushes, after.Pushes, before.Nodes, after.Nodes)
	}
	if d := synctest.Diff(before.Dump, after.Dump); d != "" {
		e.t.Fatalf("%s changed rows:\n%s", what, d)
	}
}

func (e *env) latest() int64 {
	e.t.Helper()
	var v *int64
	if err := e.s.DB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &v); err != nil {
		e.t.Fatal(err)
	}
	if v == nil {
		return 0
	}
	return *v
}

// pushBody returns the JSON of a push that inserts a list at the server's
// latest version.
func (e *env) pushBody(id int64, name string) []byte {
	e.t.Helper()
	latest := e.latest()
	row, _ := json.Marshal(map[string]any{"id": id, "name": name})
	b, err := json.Marshal(&protocol.PushRequest{
		PushID:          uuid.NewString(),
		LatestVersionID: &latest,
		Operations:      []protocol.Operation{{Order: 1, Table: "lists", RowID: strconv.FormatInt(id, 10), Command: models.Insert}},
		Payload:         protocol.Payload{"lists": {row}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// rawPush returns the body of a push based on the latest version, with
// the operations and payload given as JSON text (the array's and the
// object's insides).
func (e *env) rawPush(ops, payload string) []byte {
	e.t.Helper()
	return []byte(fmt.Sprintf(`{"push_id":%q,"latest_version_id":%d,"operations":[%s],"payload":{%s}}`, newUUID(), e.latest(), ops, payload))
}

func (e *env) push(body []byte, opts ...opt) (int, []byte, protocol.ErrorDetail) {
	e.t.Helper()
	return e.do(e.request(http.MethodPost, "push", "", body, opts...))
}

func newUUID() string { return uuid.NewString() }
