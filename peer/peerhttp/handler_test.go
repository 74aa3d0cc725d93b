package peerhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

var ctx = context.Background()

var meshSecret = []byte("the mesh secret")

// peerEnv is a node served by peerhttp.NewHandler, driven by raw signed
// requests from a peer identity.
type peerEnv struct {
	t    testing.TB
	node *peer.Node
	url  string
	from uuid.UUID // the requesting peer
}

func newPeerNode(t testing.TB, kind string) *peer.Node {
	t.Helper()
	return synctest.NewNode(t, kind, nil)
}

func newPeerEnv(t testing.TB, kind string, cfg *peerhttp.Config) *peerEnv {
	t.Helper()
	n := newPeerNode(t, kind)
	if cfg == nil {
		cfg = &peerhttp.Config{}
	}
	if cfg.Secret == nil {
		cfg.Secret = meshSecret
	}
	srv := httptest.NewServer(peerhttp.NewHandler(n, cfg))
	t.Cleanup(srv.Close)
	return &peerEnv{t: t, node: n, url: srv.URL, from: uuid.New()}
}

// peerSigning describes a request's signature; options change it.
type peerSigning struct {
	signed   peer.Signed
	secret   []byte
	sendBody []byte
	unsigned bool
	header   func(http.Header)
}

type popt func(*peerSigning)

func pSecret(s string) popt    { return func(g *peerSigning) { g.secret = []byte(s) } }
func pEndpoint(ep string) popt { return func(g *peerSigning) { g.signed.Endpoint = ep } }
func pQuery(q string) popt     { return func(g *peerSigning) { g.signed.Query = q } }
func pTime(tm time.Time) popt  { return func(g *peerSigning) { g.signed.Timestamp = tm.UnixMilli() } }
func pNonce(n string) popt     { return func(g *peerSigning) { g.signed.Nonce = n } }
func pPeer(id uuid.UUID) popt  { return func(g *peerSigning) { g.signed.Peer = id } }
func pSentBody(b []byte) popt  { return func(g *peerSigning) { g.sendBody = b } }
func pUnsigned() popt          { return func(g *peerSigning) { g.unsigned = true } }

// pTarget signs the request for the node target (form 2).
func pTarget(target uuid.UUID) popt { return func(g *peerSigning) { g.signed.Target = target } }
func pHeader(k, v string) popt {
	return func(g *peerSigning) {
		prev := g.header
		g.header = func(h http.Header) {
			if prev != nil {
				prev(h)
			}
			if v == "" {
				h.Del(k)
			} else {
				h.Set(k, v)
			}
		}
	}
}

func (e *peerEnv) request(method, endpoint, query string, body []byte, opts ...popt) *http.Request {
	e.t.Helper()
	u := e.url + "/" + endpoint
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	g := &peerSigning{
		signed: peer.Signed{Endpoint: endpoint, Query: req.URL.Query().Encode(), Peer: e.from,
			Timestamp: time.Now().UnixMilli(), Nonce: protocol.NewNonce(), Body: body},
		secret: meshSecret,
	}
	for _, o := range opts {
		o(g)
	}
	send := body
	if g.sendBody != nil {
		send = g.sendBody
	}
	if send != nil {
		req.Body = io.NopCloser(bytes.NewReader(send))
		req.ContentLength = int64(len(send))
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, e.node.Schema())
	if !g.unsigned {
		req.Header.Set(peerhttp.HeaderPeer, e.from.String())
		req.Header.Set(protocol.HeaderTimestamp, strconv.FormatInt(g.signed.Timestamp, 10))
		req.Header.Set(protocol.HeaderNonce, g.signed.Nonce)
		req.Header.Set(protocol.HeaderSignature, g.signed.Sign(g.secret))
		if g.signed.Target != uuid.Nil {
			req.Header.Set(protocol.HeaderSignatureForm, peerhttp.SignatureFormTarget)
		}
	}
	if g.header != nil {
		g.header(req.Header)
	}
	return req
}

// do sends a request and returns the status, the body and the error
// code (checked to be a well-formed error body for an error status).
func (e *peerEnv) do(req *http.Request) (int, []byte, string) {
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
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, raw, ""
	}
	var eb protocol.ErrorBody
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		e.t.Fatalf("%s %s: error %d with body %q, want a JSON error", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	return resp.StatusCode, raw, eb.Error.Code
}

// peerState is what a refused request must leave unchanged.
type peerState struct {
	digest string
	cursor int64
}

func (e *peerEnv) state() peerState {
	e.t.Helper()
	d, err := e.node.Digest(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := e.node.Cursor(ctx, e.from)
	if err != nil {
		e.t.Fatal(err)
	}
	return peerState{d, c.Seq}
}

// applyBody returns the JSON lines of one page inserting a note.
func applyBody(t testing.TB, n *peer.Node, changes ...peer.Change) []byte {
	t.Helper()
	b, err := json.Marshal(&peer.Batch{Changes: changes, Last: int64(len(changes))})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func noteChange(t testing.TB, n *peer.Node, from uuid.UUID, body string, at time.Time) peer.Change {
	t.Helper()
	x := &testmodels.Note{ID: uuid.New(), Body: body, Created: time.Now().UTC().Truncate(time.Microsecond)}
	raw, err := n.Registry().Table("notes").Codec().AppendRow(nil, reflect.ValueOf(x).Elem())
	if err != nil {
		t.Fatal(err)
	}
	return peer.Change{Table: "notes", ID: x.ID.String(), HLC: at.UnixMilli() << 16, Node: from.String(), Row: raw, Seq: 1}
}

// listChange is a new list of another node.
func listChange(t testing.TB, n *peer.Node, from uuid.UUID, name string) peer.Change {
	t.Helper()
	raw, err := n.Registry().Table("lists").Codec().AppendRowWithout(nil, reflect.ValueOf(testmodels.List{Name: name}), "id")
	if err != nil {
		t.Fatal(err)
	}
	return peer.Change{Table: "lists", ID: uuid.NewString(), HLC: time.Now().UnixMilli() << 16, Node: from.String(), Row: raw, Seq: 1}
}

// TestPeerAuth: every endpoint refuses (401, nothing applied) unsigned,
// forged and replayed requests, and accepts a well-signed one.
func TestPeerAuth(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			endpoints := []struct {
				method, name, query string
				body                func() []byte
			}{
				{http.MethodGet, "hello", "", func() []byte { return nil }},
				{http.MethodGet, "changes", "after=0&limit=10", func() []byte { return nil }},
				{http.MethodGet, "cursor", "", func() []byte { return nil }},
				{http.MethodPost, "apply", "", func() []byte { return applyBody(t, e.node, noteChange(t, e.node, e.from, "pushed", time.Now())) }},
			}
			other := uuid.New()
			cases := []struct {
				name string
				opts func(body []byte) []popt
				code string
			}{
				{"unsigned", func([]byte) []popt { return []popt{pUnsigned()} }, protocol.CodeUnauthorized},
				{"no peer header", func([]byte) []popt { return []popt{pHeader(peerhttp.HeaderPeer, "")} }, protocol.CodeUnauthorized},
				{"malformed peer", func([]byte) []popt { return []popt{pHeader(peerhttp.HeaderPeer, "node-1")} }, protocol.CodeUnauthorized},
				{"no timestamp", func([]byte) []popt { return []popt{pHeader(protocol.HeaderTimestamp, "")} }, protocol.CodeUnauthorized},
				{"no signature", func([]byte) []popt { return []popt{pHeader(protocol.HeaderSignature, "")} }, protocol.CodeUnauthorized},
				{"signature not hex", func([]byte) []popt { return []popt{pHeader(protocol.HeaderSignature, "zz")} }, protocol.CodeUnauthorized},
				{"wrong secret", func([]byte) []popt { return []popt{pSecret("guess")} }, protocol.CodeUnauthorized},
				{"signed for another endpoint", func([]byte) []popt { return []popt{pEndpoint("other")} }, protocol.CodeUnauthorized},
				{"signed for another query", func([]byte) []popt { return []popt{pQuery("after=5&limit=10")} }, protocol.CodeUnauthorized},
				{"signed as another peer", func([]byte) []popt { return []popt{pPeer(other)} }, protocol.CodeUnauthorized},
				{"other body sent", func(b []byte) []popt {
					return []popt{pSentBody(append(bytes.Clone(b), ' '))}
				}, protocol.CodeUnauthorized},
				{"stale timestamp", func([]byte) []popt { return []popt{pTime(time.Now().Add(-10 * time.Minute))} }, protocol.CodeUnauthorized},
				{"future timestamp", func([]byte) []popt { return []popt{pTime(time.Now().Add(10 * time.Minute))} }, protocol.CodeUnauthorized},
				{"malformed nonce", func([]byte) []popt { return []popt{pNonce("NOT-HEX")} }, protocol.CodeUnauthorized},
			}
			for _, ep := range endpoints {
				for _, c := range cases {
					if c.name == "other body sent" && ep.method == http.MethodGet {
						continue // a GET with a body: 400 (TestPeerGetBodyRefused)
					}
					before := e.state()
					body := ep.body()
					status, raw, code := e.do(e.request(ep.method, ep.name, ep.query, body, c.opts(body)...))
					if status != http.StatusUnauthorized || code != c.code {
						t.Fatalf("%s %s: %d %s %s, want 401 %s", ep.name, c.name, status, code, raw, c.code)
					}
					if e.state() != before {
						t.Fatalf("%s %s: a refused request changed the node", ep.name, c.name)
					}
				}
				// A good request passes once; the same request again is a
				// replay.
				body := ep.body()
				nonce := protocol.NewNonce()
				ts := time.Now()
				if status, raw, _ := e.do(e.request(ep.method, ep.name, ep.query, body, pNonce(nonce), pTime(ts))); status != http.StatusOK {
					t.Fatalf("%s: %d %s", ep.name, status, raw)
				}
				before := e.state()
				status, raw, code := e.do(e.request(ep.method, ep.name, ep.query, body, pNonce(nonce), pTime(ts)))
				if status != http.StatusUnauthorized || code != protocol.CodeReplay {
					t.Fatalf("%s replayed: %d %s, want 401 %s", ep.name, status, raw, protocol.CodeReplay)
				}
				if e.state() != before {
					t.Fatalf("%s: a replayed request changed the node", ep.name)
				}
			}
			if got := peerCount(t, e.node, "notes"); got != 1 {
				t.Fatalf("%d notes applied, want the one well-signed push", got)
			}
		})
	}
}

func peerCount(t testing.TB, n *peer.Node, table string) int {
	t.Helper()
	var c int
	if err := n.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPeerEndpoints: the answers of the four endpoints, and peerhttp.Peer
// syncing through them both ways.
func TestPeerEndpoints(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			status, raw, _ := e.do(e.request(http.MethodGet, "hello", "", nil))
			var h peerhttp.Hello
			if status != http.StatusOK || json.Unmarshal(raw, &h) != nil || h.Node != e.node.ID().String() || h.Schema != e.node.Schema() {
				t.Fatalf("hello: %d %s", status, raw)
			}
			status, raw, _ = e.do(e.request(http.MethodPost, "apply", "", applyBody(t, e.node, noteChange(t, e.node, e.from, "one", time.Now()))))
			var a peerhttp.ApplyAnswer
			if status != http.StatusOK || json.Unmarshal(raw, &a) != nil || a.Applied != 1 {
				t.Fatalf("apply: %d %s", status, raw)
			}
			status, raw, _ = e.do(e.request(http.MethodGet, "cursor", "", nil))
			var c peerhttp.CursorAnswer
			if status != http.StatusOK || json.Unmarshal(raw, &c) != nil || c.Seq != 1 {
				t.Fatalf("cursor: %d %s", status, raw)
			}
			// The feed leaves out the asking peer's own changes.
			if _, err := e.node.DB().NewInsert().Model(&testmodels.List{Name: "local"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			status, raw, _ = e.do(e.request(http.MethodGet, "changes", "after=0&limit=10", nil))
			var b peer.Batch
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil || len(b.Changes) != 1 || b.Changes[0].Table != "lists" || b.Last != 2 || b.More {
				t.Fatalf("changes: %d %s", status, raw)
			}
			status, raw, code := e.do(e.request(http.MethodGet, "nowhere", "", nil))
			if status != http.StatusNotFound || code != protocol.CodeBadRequest {
				t.Fatalf("unknown endpoint: %d %s", status, raw)
			}
			status, raw, _ = e.do(e.request(http.MethodDelete, "apply", "", nil))
			if status != http.StatusMethodNotAllowed {
				t.Fatalf("DELETE /apply: %d %s", status, raw)
			}
			// A real node syncs through the handler, both ways.
			other := newPeerNode(t, dbtest.KindSQLite)
			if _, err := other.DB().NewInsert().Model(&testmodels.Note{ID: uuid.New(), Body: "from other", Created: time.Now().UTC().Truncate(time.Microsecond)}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			hp := &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: other}
			rep, err := other.Sync(ctx, hp)
			if err != nil || rep.Pulled != 2 || rep.Pushed != 1 {
				t.Fatalf("sync: %+v, %v", rep, err)
			}
			d1, _ := other.Digest(ctx)
			d2, _ := e.node.Digest(ctx)
			if d1 != d2 {
				t.Fatal("digests differ after a sync over HTTP")
			}
			if rep, err := other.Sync(ctx, hp); err != nil || rep.Pulled != 0 || rep.Pushed != 0 {
				t.Fatalf("second sync: %+v, %v", rep, err)
			}
			if _, err := other.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: []byte("wrong"), Self: other}); !errors.Is(err, dbsync.ErrUnauthorized) {
				t.Fatalf("sync with a wrong secret: %v, want ErrUnauthorized", err)
			}
		})
	}
}

// TestPeerRequestChecks: protocol and schema mismatches, bad parameters
// and bad bodies are refused with their status and code, applying nothing.
func TestPeerRequestChecks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			good := noteChange(t, e.node, e.from, "good", time.Now())
			notUUID := good
			notUUID.ID = "42"
			noRow := good
			noRow.Row = nil
			badNode := good
			badNode.Node = "someone"
			unknownCol := good
			unknownCol.Row = json.RawMessage(strings.Replace(string(good.Row), `"body":`, `"nope":1,"body":`, 1))
			unknownTable := good
			unknownTable.Table = "secrets"
			// Over 1 MiB, so spooled and decoded from the file: its last
			// line is not JSON, and the pages before it are not applied.
			var many []peer.Change
			for i := range 300 {
				many = append(many, noteChange(t, e.node, e.from, fmt.Sprint(i, strings.Repeat("m", 4<<10)), time.Now()))
			}
			spooledBad := append(applyBody(t, e.node, many...), "{not json\n"...)
			cases := []struct {
				name          string
				method, ep, q string
				body          []byte
				opts          []popt
				status        int
				code          string
			}{
				{"schema", http.MethodGet, "hello", "", nil, []popt{pHeader(protocol.HeaderSchema, "0123")}, http.StatusConflict, protocol.CodeSchemaMismatch},
				{"no schema", http.MethodGet, "changes", "after=0&limit=1", nil, []popt{pHeader(protocol.HeaderSchema, "")}, http.StatusConflict, protocol.CodeSchemaMismatch},
				{"apply schema", http.MethodPost, "apply", "", applyBody(t, e.node, good), []popt{pHeader(protocol.HeaderSchema, "0123")}, http.StatusConflict, protocol.CodeSchemaMismatch},
				{"protocol", http.MethodGet, "hello", "", nil, []popt{pHeader(protocol.HeaderProtocol, "99")}, http.StatusBadRequest, protocol.CodeProtocolVersion},
				{"negative after", http.MethodGet, "changes", "after=-1&limit=10", nil, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"after not a number", http.MethodGet, "changes", "after=x&limit=10", nil, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"after missing", http.MethodGet, "changes", "limit=10", nil, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"negative limit", http.MethodGet, "changes", "after=0&limit=-5", nil, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"limit overflow", http.MethodGet, "changes", "after=0&limit=99999999999999999999", nil, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply not JSON", http.MethodPost, "apply", "", []byte("{not json"), nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply wrong shape", http.MethodPost, "apply", "", []byte(`{"changes":{}}`), nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply spooled, last line not JSON", http.MethodPost, "apply", "", spooledBad, nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply unknown table", http.MethodPost, "apply", "", applyBody(t, e.node, good, unknownTable), nil, http.StatusBadRequest, protocol.CodeUnknownTable},
				{"apply unknown column", http.MethodPost, "apply", "", applyBody(t, e.node, unknownCol), nil, http.StatusBadRequest, protocol.CodeUnknownColumn},
				{"apply id not a UUID", http.MethodPost, "apply", "", applyBody(t, e.node, good, notUUID), nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply node not a UUID", http.MethodPost, "apply", "", applyBody(t, e.node, badNode), nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply live without row", http.MethodPost, "apply", "", applyBody(t, e.node, good, noRow), nil, http.StatusBadRequest, protocol.CodeBadRequest},
				{"apply clock ahead", http.MethodPost, "apply", "", applyBody(t, e.node, good, noteChange(t, e.node, e.from, "future", time.Now().Add(time.Hour))), nil, http.StatusConflict, peerhttp.CodeClockSkew},
				{"apply unique collision", http.MethodPost, "apply", "", applyBody(t, e.node, good, listChange(t, e.node, e.from, "taken")), nil, http.StatusConflict, peerhttp.CodeConstraint},
			}
			// A list name this node holds already, under another identity.
			if _, err := e.node.DB().NewInsert().Model(&testmodels.List{Name: "taken"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				before := e.state()
				status, raw, code := e.do(e.request(c.method, c.ep, c.q, c.body, c.opts...))
				if status != c.status || code != c.code {
					t.Fatalf("%s: %d %s, want %d %s", c.name, status, raw, c.status, c.code)
				}
				if e.state() != before {
					t.Fatalf("%s: a refused request changed the node", c.name)
				}
			}
			// A node whose schema differs is told so by peerhttp.Peer, in
			// words that say what differs (it was told only its own
			// fingerprint).
			db := dbtest.SQLite(t)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			reg, _ := dbsync.Track(db, (*testmodels.Note)(nil))
			narrow, err := peer.New(ctx, db, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := narrow.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: narrow}); !errors.Is(err, dbsync.ErrSchemaMismatch) || !strings.Contains(err.Error(), "different tables or columns") {
				t.Fatalf("sync across schemas: %v, want ErrSchemaMismatch saying the nodes track different tables or columns", err)
			}
			// A pushing node whose clock runs ahead gets ErrClockSkew.
			ahead := newPeerNode(t, dbtest.KindSQLite)
			if _, err := ahead.DB().NewInsert().Model(&testmodels.List{Name: "x"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := ahead.DB().ExecContext(ctx, "UPDATE sync_lww SET hlc = hlc + (3600000 << 16)"); err != nil {
				t.Fatal(err)
			}
			if _, err := ahead.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: ahead}); !errors.Is(err, peer.ErrClockSkew) {
				t.Fatalf("sync from a clock an hour ahead: %v, want ErrClockSkew", err)
			}
		})
	}
}

// TestPeerResync: a peer asking for changes after a position older than
// the node's purge point gets 409 with the resync code (ErrResync through
// peerhttp.Peer); the full state is served; Sync resynchronizes by itself.
func TestPeerResync(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			other := newPeerNode(t, dbtest.KindSQLite)
			hp := &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: other}
			for i := range 3 {
				if _, err := e.node.DB().NewInsert().Model(&testmodels.List{Name: fmt.Sprint(i)}).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := other.Sync(ctx, hp); err != nil {
				t.Fatal(err)
			}
			if _, err := e.node.DB().ExecContext(ctx, "DELETE FROM lists WHERE name = '0'"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if k, err := e.node.Purge(ctx, 10*time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v", k, err)
			}
			e.from = other.ID()
			status, raw, code := e.do(e.request(http.MethodGet, "changes", "after=0&limit=10", nil))
			if status != http.StatusConflict || code != peerhttp.CodeResync {
				t.Fatalf("changes before the purge point: %d %s, want 409 %s", status, raw, peerhttp.CodeResync)
			}
			if _, err := hp.Changes(ctx, peer.Position{}, 10, other.ID(), false); !errors.Is(err, peer.ErrResync) {
				t.Fatalf("Peer.Changes: %v, want ErrResync", err)
			}
			status, raw, _ = e.do(e.request(http.MethodGet, "changes", "after=0&full=true&limit=10", nil))
			var b peer.Batch
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil || !b.Full || b.PurgedHLC == 0 || len(b.Changes) != 2 {
				t.Fatalf("full state: %d %s", status, raw)
			}
			rep, err := other.Sync(ctx, hp)
			if err != nil || !rep.Resynced {
				t.Fatalf("sync: %+v, %v; want a resynchronization", rep, err)
			}
			if got := peerCount(t, other, "lists"); got != 2 {
				t.Fatalf("%d lists after the resynchronization, want 2", got)
			}
		})
	}
}

// TestPeerBodyTooLarge: an apply body over the limit is refused with 413
// before anything is applied.
func TestPeerBodyTooLarge(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{MaxBodyBytes: 2048})
			var changes []peer.Change
			for i := range 20 {
				changes = append(changes, noteChange(t, e.node, e.from, fmt.Sprint(i), time.Now()))
			}
			body := applyBody(t, e.node, changes...)
			if len(body) <= 2048 {
				t.Fatalf("body of %d bytes is not over the limit", len(body))
			}
			before := e.state()
			status, raw, code := e.do(e.request(http.MethodPost, "apply", "", body))
			if status != http.StatusRequestEntityTooLarge || code != protocol.CodeTooLarge {
				t.Fatalf("%d %s, want 413 %s", status, raw, protocol.CodeTooLarge)
			}
			if !strings.Contains(string(raw), "peerhttp.Config.MaxBodyBytes") {
				t.Errorf("413 %s does not name the limit to raise", raw)
			}
			if e.state() != before {
				t.Fatal("a refused body was applied")
			}
			// Within the limit: accepted.
			status, raw, _ = e.do(e.request(http.MethodPost, "apply", "", applyBody(t, e.node, changes[0])))
			if status != http.StatusOK {
				t.Fatalf("small body: %d %s", status, raw)
			}
		})
	}
}

// TestPeerPreauthBudget: the peer handler bounds unauthenticated bodies as
// the server's does: beyond the memory budget a request is answered 503
// busy before its body is read, and a body over 1 MiB is spooled, hashed
// while read, and applied once its signature holds.
// TestPeerPreauthHoldsWhatArrived: an apply body not yet authenticated
// holds of the disk budget what it sent, not what its Content-Length
// announces. A party without the mesh secret announcing 1 GiB (the
// default budget) and sending a trickle held all of it, for as long as
// the read deadlines let it trickle (hours), and every peer's apply over 1
// MiB got 503 busy meanwhile.
func TestPeerPreauthHoldsWhatArrived(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{SpoolDir: t.TempDir()})
			g := synctest.NewGenBody(1<<30, 64<<10)
			ctx, cancel := context.WithCancel(ctx)
			req := e.request(http.MethodPost, "apply", "", nil, pSecret("not the secret")).WithContext(ctx)
			req.Body, req.ContentLength = io.NopCloser(g), 1<<30
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			defer func() { cancel(); g.Release(); <-done }()
			<-g.Held()
			a := newPeerNode(t, dbtest.KindSQLite)
			synctest.InsertNotes(t, a.DB(), 1000, 2000)
			rep, err := a.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: a})
			if err != nil || rep.Pushed != 1000 {
				t.Fatalf("a peer's sync of 2 MB while an unauthenticated body trickles: %+v %v", rep, err)
			}

			// A body sent fast and then stalled is refused once its window
			// (ClockSkew 1 s) closes, not at the rate deadline.
			w := newPeerEnv(t, kind, &peerhttp.Config{SpoolDir: t.TempDir(), ClockSkew: time.Second})
			stalled := synctest.NewGenBody(13<<20, 12<<20)
			sreq := w.request(http.MethodPost, "apply", "", nil, pSecret("not the secret"))
			sreq.Body, sreq.ContentLength = io.NopCloser(stalled), 13<<20
			synctest.Stalled(t, sreq, stalled, http.StatusUnauthorized, 5*time.Second)
		})
	}
}

func TestPeerPreauthBudget(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{PreauthMemory: 512 << 10, SpoolDir: t.TempDir()})
			before := e.state()
			// 600 KiB held in memory would exceed the 512 KiB budget.
			status, raw, code := e.do(e.request(http.MethodPost, "apply", "", bytes.Repeat([]byte{' '}, 600<<10)))
			if status != http.StatusServiceUnavailable || code != protocol.CodeBusy {
				t.Fatalf("%d %s, want 503 %s", status, raw, protocol.CodeBusy)
			}
			if e.state() != before {
				t.Fatal("a refused body was applied")
			}
			// Over 1 MiB: spooled (its 64 KiB buffer fits the budget).
			var changes []peer.Change
			pad := strings.Repeat("x", 1000)
			for i := range 1200 {
				changes = append(changes, noteChange(t, e.node, e.from, fmt.Sprint(i, pad), time.Now()))
			}
			body := applyBody(t, e.node, changes...)
			if len(body) <= 1<<20 {
				t.Fatalf("body of %d bytes is not over 1 MiB", len(body))
			}
			bad := e.request(http.MethodPost, "apply", "", body)
			bad.Header.Set(protocol.HeaderSignature, strings.Repeat("0", 64))
			if status, raw, code := e.do(bad); status != http.StatusUnauthorized || code != protocol.CodeUnauthorized {
				t.Fatalf("badly signed spooled body: %d %s", status, raw)
			}
			if e.state() != before {
				t.Fatal("a badly signed body was applied")
			}
			if status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", body)); status != http.StatusOK {
				t.Fatalf("spooled body: %d %s", status, raw)
			}
			if e.state() == before {
				t.Fatal("the spooled body was not applied")
			}
		})
	}
}

// TestPeerConstraintNamed: a peer's changes that break a constraint of the
// node's database are refused (409 constraint) naming the table and the
// rows from the registry, never with the database's text (which was sent
// before).
func TestPeerConstraintNamed(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			if _, err := e.node.DB().NewInsert().Model(&testmodels.List{Name: "home"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			// Another node's list of the same (unique) name.
			c := listChange(t, e.node, e.from, "home")
			before := e.state()
			status, raw, code := e.do(e.request(http.MethodPost, "apply", "", applyBody(t, e.node, c)))
			if status != http.StatusConflict || code != peerhttp.CodeConstraint {
				t.Fatalf("apply of a taken unique value: %d %s, want 409 %s", status, raw, peerhttp.CodeConstraint)
			}
			var eb protocol.ErrorBody
			if err := json.Unmarshal(raw, &eb); err != nil {
				t.Fatal(err)
			}
			dbtest.NoDatabaseText(t, "unique", eb.Error.Message)
			if !strings.Contains(eb.Error.Message, "lists") || !strings.Contains(eb.Error.Message, c.ID) {
				t.Fatalf("message %q does not name lists %s", eb.Error.Message, c.ID)
			}
			if after := e.state(); after != before {
				t.Fatal("a refused apply changed the node")
			}
		})
	}
}

// TestSameNodeIsOverHTTP: a node of the served node's identity (a copy of
// its database) is refused, with peer.ErrSameNode on both sides: by Sync
// before it sends anything, and by the handler (409 same_node) when its
// pages reach it all the same (Push).
func TestSameNodeIsOverHTTP(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			twin := synctest.NewNode(t, dbtest.KindSQLite, &peer.Config{ID: e.node.ID()})
			if _, err := twin.DB().NewInsert().Model(&testmodels.Note{ID: uuid.New(), Body: "twin's", Created: time.Now().UTC().Truncate(time.Microsecond)}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			before, _ := e.node.Digest(ctx)
			hp := &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: twin}
			if _, err := twin.Sync(ctx, hp); !errors.Is(err, peer.ErrSameNode) {
				t.Errorf("sync: %v, want peer.ErrSameNode", err)
			}
			if _, err := twin.Push(ctx, e.node.ID(), hp); !errors.Is(err, peer.ErrSameNode) {
				t.Errorf("push: %v, want peer.ErrSameNode", err)
			}
			if after, _ := e.node.Digest(ctx); after != before {
				t.Error("the node applied its twin's rows")
			}
		})
	}
}

// TestPeerGetBodyRefused: a GET request (hello, changes, cursor) has no
// body: one announced, by a length or chunked, is refused with 400
// bad_request before it is read. Before, it was read, up to MaxBodyBytes
// (256 MiB) spooled to disk and hashed, before the signature was checked:
// work as large as a party without the secret chose.
func TestPeerGetBodyRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{SpoolDir: t.TempDir()})
			const size = 32 << 20
			before := e.state()
			for _, ep := range []struct{ name, query string }{{"hello", ""}, {"changes", "after=0&limit=10"}, {"cursor", ""}} {
				for _, secret := range []string{"guess", string(meshSecret)} {
					for _, withLength := range []bool{false, true} {
						g := synctest.NewGenBody(size, 0)
						req := e.request(http.MethodGet, ep.name, ep.query, nil, pSecret(secret))
						req.Body = io.NopCloser(g)
						req.ContentLength = -1
						if withLength {
							req.ContentLength = size
						}
						status, raw, code := e.do(req)
						if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
							t.Fatalf("GET /%s with a body (secret %q, length %v): %d %s, want 400 %s", ep.name, secret, withLength, status, raw, protocol.CodeBadRequest)
						}
						// Only what the connection buffers was sent.
						if n := g.BytesRead(); n >= size/2 {
							t.Fatalf("GET /%s (secret %q, length %v): %d bytes of the body sent before the answer", ep.name, secret, withLength, n)
						}
					}
				}
			}
			if e.state() != before {
				t.Fatal("a refused request changed the node")
			}
			// Without a body, as peerhttp.Peer sends them: answered.
			if status, raw, _ := e.do(e.request(http.MethodGet, "hello", "", nil)); status != http.StatusOK {
				t.Fatalf("hello: %d %s", status, raw)
			}
		})
	}
}

// TestPeerReplayToOtherNode: a request captured on its way to one node of
// the mesh cannot be replayed to another within the window. The signature
// named no target, and nonces are remembered by the node that received
// them: A's apply to B, replayed to C, was applied there (C's cursor of A
// then moved past writes C never got: A and C never converged). A peer of
// this release signs every request after hello for the node it is for
// (form 2, which B announces in its hello); C refuses it. A request of a
// peer of an earlier release (no target) passes, unless the handler sets
// RequireTargetSigned; hello is never signed for a target.
func TestPeerReplayToOtherNode(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			type captured struct {
				method, path string
				header       http.Header
				body         []byte
			}
			var seen []captured
			var mu sync.Mutex
			serve := func(n *peer.Node, cfg *peerhttp.Config) string {
				h := peerhttp.NewHandler(n, cfg)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					mu.Lock()
					seen = append(seen, captured{r.Method, r.URL.RequestURI(), r.Header.Clone(), body})
					mu.Unlock()
					r.Body = io.NopCloser(bytes.NewReader(body))
					h.ServeHTTP(w, r)
				}))
				t.Cleanup(srv.Close)
				return srv.URL
			}
			a, b, c := newPeerNode(t, dbtest.KindSQLite), newPeerNode(t, kind), newPeerNode(t, kind)
			synctest.InsertNotes(t, a.DB(), 3, 10)
			bURL := serve(b, &peerhttp.Config{Secret: meshSecret})
			cURL := serve(c, &peerhttp.Config{Secret: meshSecret})
			if _, err := a.Sync(ctx, &peerhttp.Peer{URL: bURL, Secret: meshSecret, Self: a}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			toB := seen
			seen = nil
			mu.Unlock()
			digest := func() string {
				t.Helper()
				d, err := c.Digest(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			before := digest()
			replayed := map[string]bool{}
			for _, req := range toB {
				r, err := http.NewRequestWithContext(ctx, req.method, cURL+req.path, bytes.NewReader(req.body))
				if err != nil {
					t.Fatal(err)
				}
				r.Header = req.header.Clone()
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				endpoint := strings.TrimPrefix(strings.SplitN(req.path, "?", 2)[0], "/")
				replayed[endpoint] = true
				if want := endpoint != "hello"; want != (resp.StatusCode == http.StatusUnauthorized) {
					t.Errorf("%s %s replayed to C: %d %s", req.method, req.path, resp.StatusCode, raw)
				}
			}
			if !replayed["apply"] || !replayed["changes"] || !replayed["cursor"] {
				t.Fatalf("captured %v, want hello, cursor, changes and apply", replayed)
			}
			if after := digest(); after != before {
				t.Fatal("a request replayed to C changed C")
			}
			// A's own sync with C goes through.
			if rep, err := a.Sync(ctx, &peerhttp.Peer{URL: cURL, Secret: meshSecret, Self: a}); err != nil || rep.Pushed != 3 {
				t.Fatalf("A syncs with C: %+v %v", rep, err)
			}

			// A request signed without a target (a peer of an earlier
			// release): taken, unless the handler requires the target.
			for _, require := range []bool{false, true} {
				e := newPeerEnv(t, kind, &peerhttp.Config{RequireTargetSigned: require})
				for _, ep := range []string{"hello", "cursor"} {
					status, raw, _ := e.do(e.request(http.MethodGet, ep, "", nil))
					if want := http.StatusOK; require && ep != "hello" {
						want = http.StatusUnauthorized
						if status != want {
							t.Errorf("RequireTargetSigned, %s without a target: %d %s, want %d", ep, status, raw, want)
						}
					} else if status != want {
						t.Errorf("RequireTargetSigned %v, %s without a target: %d %s, want %d", require, ep, status, raw, want)
					}
				}
				status, raw, _ := e.do(e.request(http.MethodGet, "cursor", "", nil, pTarget(e.node.ID())))
				if status != http.StatusOK {
					t.Errorf("RequireTargetSigned %v, cursor signed for the node: %d %s", require, status, raw)
				}
				status, raw, _ = e.do(e.request(http.MethodGet, "cursor", "", nil, pTarget(uuid.New())))
				if status != http.StatusUnauthorized {
					t.Errorf("RequireTargetSigned %v, cursor signed for another node: %d %s, want 401", require, status, raw)
				}
			}
		})
	}
}
