package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

var ctx = context.Background()

func ptr(v int64) *int64 { return &v }

// fixture is a server on a fresh database, reachable directly and over
// loopback HTTP.
type fixture struct {
	t    *testing.T
	kind string
	*synctest.Server
}

func newFixture(t *testing.T, kind string, cfg *server.Config) *fixture {
	t.Helper()
	return &fixture{t: t, kind: kind, Server: synctest.NewServer(t, kind, cfg)}
}

func newFixtureWith(t *testing.T, kind string, cfg *server.Config, models ...any) *fixture {
	t.Helper()
	s := synctest.NewServerWith(t, synctest.ServerOn(t, kind, testmodels.CreateSchema, models), testmodels.CreateSchema, models, cfg)
	return &fixture{t: t, kind: kind, Server: s}
}

type node struct {
	id     int64
	secret string
}

func (f *fixture) register() node {
	f.t.Helper()
	resp, err := f.Srv.Register(ctx, nil)
	if err != nil {
		f.t.Fatalf("register: %v", err)
	}
	return node{id: resp.Node.NodeID, secret: resp.Node.Secret}
}

// state is what a refused request must leave unchanged.
type state struct {
	Versions, Operations, Pushes int
	Dump                         map[string][]string
	// MaxKeys are the greatest keys the integer-keyed tables have used
	// (their sequences too: PostgreSQL does not undo a setval).
	MaxKeys map[string]int64
}

func (f *fixture) state() state {
	f.t.Helper()
	return stateOf(f.t, f.DB, f.Reg)
}

func stateOf(t testing.TB, db bun.IDB, reg *dbsync.Registry) state {
	t.Helper()
	var s state
	for _, c := range []struct {
		model any
		n     *int
	}{{(*models.Version)(nil), &s.Versions}, {(*models.Operation)(nil), &s.Operations}, {(*models.Push)(nil), &s.Pushes}} {
		n, err := db.NewSelect().Model(c.model).Count(ctx)
		if err != nil {
			t.Fatalf("count: %v", err)
		}
		*c.n = int(n)
	}
	s.Dump = synctest.Dump(t, db, reg)
	s.MaxKeys = map[string]int64{}
	for _, tb := range reg.Tables() {
		if tb.KeyKind != protocol.KeyInt {
			continue
		}
		n, err := dialect.MaxKey(ctx, db, tb.Name, tb.PK.Name)
		if err != nil {
			t.Fatal(err)
		}
		s.MaxKeys[tb.Name] = n
	}
	return s
}

func (f *fixture) mustUnchanged(before state, what string) {
	f.t.Helper()
	after := f.state()
	if before.Versions != after.Versions || before.Operations != after.Operations || before.Pushes != after.Pushes {
		f.t.Fatalf("%s wrote sync state: versions %d→%d, operations %d→%d, pushes %d→%d", what,
			before.Versions, after.Versions, before.Operations, after.Operations, before.Pushes, after.Pushes)
	}
	if d := synctest.Diff(before.Dump, after.Dump); d != "" {
		f.t.Fatalf("%s changed rows:\n%s", what, d)
	}
	if !maps.Equal(before.MaxKeys, after.MaxKeys) {
		f.t.Fatalf("%s moved key sequences: %v → %v", what, before.MaxKeys, after.MaxKeys)
	}
}

func (f *fixture) latest() int64 {
	f.t.Helper()
	var v *int64
	if err := f.DB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &v); err != nil {
		f.t.Fatal(err)
	}
	if v == nil {
		return 0
	}
	return *v
}

func listRow(id int64, name string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"id": id, "name": name})
	return b
}

func todoRow(id, list int64, title string, done bool) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"id": id, "list_id": list, "title": title, "done": done})
	return b
}

// push builds a push request: every row is inserted ("i") unless it is
// listed in updates; deletes are given as table/key pairs.
type push struct {
	req   protocol.PushRequest
	order int64
}

func newPush(latest *int64) *push {
	return &push{req: protocol.PushRequest{PushID: uuid.NewString(), LatestVersionID: latest, Payload: protocol.Payload{}}}
}

func (p *push) op(table, key string, cmd models.Command, row json.RawMessage) *push {
	p.order++
	p.req.Operations = append(p.req.Operations, protocol.Operation{Order: p.order, Table: table, RowID: key, Command: cmd})
	if row != nil {
		p.req.Payload[table] = append(p.req.Payload[table], row)
	}
	return p
}

func (p *push) list(cmd models.Command, id int64, name string) *push {
	return p.op("lists", strconv.FormatInt(id, 10), cmd, listRow(id, name))
}

func (p *push) todo(cmd models.Command, id, list int64, title string) *push {
	return p.op("todos", strconv.FormatInt(id, 10), cmd, todoRow(id, list, title, false))
}

func (p *push) del(table string, key int64) *push {
	return p.op(table, strconv.FormatInt(key, 10), models.Delete, nil)
}

// pull runs Pull and returns a copy of every message.
func pull(t testing.TB, srv *server.Server, node int64, req *protocol.PullRequest) ([]*protocol.Message, error) {
	t.Helper()
	var out []*protocol.Message
	err := srv.Pull(ctx, node, req, func(m *protocol.Message) error {
		raw, err := json.Marshal(m)
		if err != nil {
			return err
		}
		var c protocol.Message
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		out = append(out, &c)
		return nil
	})
	return out, err
}

func mustPull(t testing.TB, srv *server.Server, node int64, req *protocol.PullRequest) []*protocol.Message {
	t.Helper()
	msgs, err := pull(t, srv, node, req)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if len(msgs) == 0 || msgs[0].Type != protocol.MsgHeader || msgs[len(msgs)-1].Type != protocol.MsgEnd {
		t.Fatalf("pull stream %v: want header … end", msgTypes(msgs))
	}
	return msgs
}

func msgTypes(msgs []*protocol.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Type
	}
	return out
}

// pulledOps returns the operations of a pull's chunks.
func pulledOps(msgs []*protocol.Message) []protocol.Operation {
	var out []protocol.Operation
	for _, m := range msgs {
		if m.Type == protocol.MsgChunk {
			out = append(out, m.Operations...)
		}
	}
	return out
}

// signedRequest builds a signed HTTP request for a node, as a client would.
func signedRequest(t testing.TB, s *synctest.Server, n node, method, endpoint, query string, body []byte) *http.Request {
	t.Helper()
	u := s.URL + "/" + endpoint
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sg := &protocol.Signed{
		Endpoint: endpoint, Query: req.URL.Query().Encode(), NodeID: n.id,
		Timestamp: time.Now().UnixMilli(), Nonce: protocol.NewNonce(), Body: body,
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, s.Reg.Fingerprint())
	req.Header.Set(protocol.HeaderNode, strconv.FormatInt(n.id, 10))
	req.Header.Set(protocol.HeaderTimestamp, strconv.FormatInt(sg.Timestamp, 10))
	req.Header.Set(protocol.HeaderNonce, sg.Nonce)
	req.Header.Set(protocol.HeaderSignature, sg.Sign(n.secret))
	return req
}

// httpPush sends a push over HTTP and returns the status and error body.
func httpPush(t testing.TB, s *synctest.Server, n node, req *protocol.PushRequest) (int, protocol.ErrorBody, []byte) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(signedRequest(t, s, n, http.MethodPost, "push", "", body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var eb protocol.ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &eb); err != nil {
			t.Fatalf("error body %q: %v", raw, err)
		}
	}
	return resp.StatusCode, eb, raw
}

// events records server events.
type events struct {
	mu  sync.Mutex
	all []dbsync.Event
}

func (e *events) on(_ context.Context, ev dbsync.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// take returns the events recorded since the last call.
func (e *events) take() []dbsync.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.all
	e.all = nil
	return out
}

func (e *events) String() string { return fmt.Sprint(e.all) }
