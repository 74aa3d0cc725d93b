package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestRequestChecks: protocol, schema and signature checks refuse a push
// with the right status and code, and nothing is written.
func TestRequestChecks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			other := newEnv(t, kind, nil) // a node of another server
			// A second node of this server.
			status, raw := e.register(`{"extra_data":{"who":"b"}}`)
			var b protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil {
				t.Fatalf("register b: %d %s", status, raw)
			}
			now := time.Now()
			cases := []struct {
				name   string
				opts   []opt
				status int
				code   string
			}{
				{"no protocol", []opt{setHeader(protocol.HeaderProtocol, "")}, 400, protocol.CodeProtocolVersion},
				{"protocol 2", []opt{setHeader(protocol.HeaderProtocol, "2")}, 400, protocol.CodeProtocolVersion},
				{"protocol 01", []opt{setHeader(protocol.HeaderProtocol, "01")}, 400, protocol.CodeProtocolVersion},
				{"no schema", []opt{setHeader(protocol.HeaderSchema, "")}, 409, protocol.CodeSchemaMismatch},
				{"other schema", []opt{setHeader(protocol.HeaderSchema, "0123456789abcdef0123456789abcdef")}, 409, protocol.CodeSchemaMismatch},
				{"unsigned", []opt{unsigned()}, 401, protocol.CodeUnauthorized},
				{"no signature", []opt{setHeader(protocol.HeaderSignature, "")}, 401, protocol.CodeUnauthorized},
				{"no nonce", []opt{setHeader(protocol.HeaderNonce, "")}, 401, protocol.CodeUnauthorized},
				{"no timestamp", []opt{setHeader(protocol.HeaderTimestamp, "")}, 401, protocol.CodeUnauthorized},
				{"no node", []opt{setHeader(protocol.HeaderNode, "")}, 401, protocol.CodeUnauthorized},
				{"forged signature", []opt{withSecret("not the secret")}, 401, protocol.CodeUnauthorized},
				{"empty secret", []opt{withSecret("")}, 401, protocol.CodeUnauthorized},
				{"signature not hex", []opt{setHeader(protocol.HeaderSignature, "zz"+strings.Repeat("0", 62))}, 401, protocol.CodeUnauthorized},
				{"signature truncated", []opt{withHeader(func(h http.Header) { h.Set(protocol.HeaderSignature, h.Get(protocol.HeaderSignature)[:32]) })}, 401, protocol.CodeUnauthorized},
				{"signature over another body", []opt{withSentBody([]byte(`{"push_id":"x"}`))}, 401, protocol.CodeUnauthorized},
				{"signature for pull", []opt{withEndpoint("pull")}, 401, protocol.CodeUnauthorized},
				{"signature with a query", []opt{withSignedQuery("a=1")}, 401, protocol.CodeUnauthorized},
				{"signature for another node", []opt{withNode(b.Node.NodeID)}, 401, protocol.CodeUnauthorized},
				{"other node's header", []opt{setHeader(protocol.HeaderNode, fmt.Sprint(b.Node.NodeID))}, 401, protocol.CodeUnauthorized},
				{"other node's secret", []opt{withSecret(b.Node.Secret)}, 401, protocol.CodeUnauthorized},
				{"stale timestamp", []opt{withTime(now.Add(-6 * time.Minute))}, 401, protocol.CodeUnauthorized},
				{"future timestamp", []opt{withTime(now.Add(6 * time.Minute))}, 401, protocol.CodeUnauthorized},
				{"timestamp in seconds", []opt{withHeader(func(h http.Header) { h.Set(protocol.HeaderTimestamp, fmt.Sprint(now.Unix())) })}, 401, protocol.CodeUnauthorized},
				{"timestamp not a number", []opt{setHeader(protocol.HeaderTimestamp, "yesterday")}, 401, protocol.CodeUnauthorized},
				{"huge timestamp", []opt{setHeader(protocol.HeaderTimestamp, "9223372036854775807")}, 401, protocol.CodeUnauthorized},
				{"short nonce", []opt{withNonce("0123abcd")}, 401, protocol.CodeUnauthorized},
				{"long nonce", []opt{withNonce(strings.Repeat("a", 65))}, 401, protocol.CodeUnauthorized},
				{"upper-case nonce", []opt{withNonce("0123456789ABCDEF0123456789ABCDEF")}, 401, protocol.CodeUnauthorized},
				{"nonce not hex", []opt{withNonce("'; DROP TABLE sync_nonces; --aaaa")}, 401, protocol.CodeUnauthorized},
				{"unknown node", []opt{withNode(987654)}, 401, protocol.CodeUnauthorized},
				{"node of another server", []opt{withNode(other.node.NodeID + 100), withSecret(other.node.Secret)}, 401, protocol.CodeUnauthorized},
				{"node not a number", []opt{setHeader(protocol.HeaderNode, "1 OR 1=1")}, 401, protocol.CodeUnauthorized},
				{"negative node", []opt{withNode(-1)}, 401, protocol.CodeUnauthorized},
			}
			messages := map[string]string{}
			for _, c := range cases {
				before := e.state()
				status, raw, d := e.push(e.pushBody(1, "list"), c.opts...)
				if status != c.status || d.Code != c.code {
					t.Fatalf("%s: %d %s, want %d %s", c.name, status, raw, c.status, c.code)
				}
				e.unchanged(before, c.name)
				messages[c.name] = d.Message
			}
			// An unknown node gets the answer of a wrong signature: node ids
			// cannot be probed.
			for _, name := range []string{"unknown node", "node of another server", "negative node"} {
				if messages[name] != messages["forged signature"] {
					t.Fatalf("%s answered %q, a forged signature %q: they must not differ", name, messages[name], messages["forged signature"])
				}
			}
			// The same push, properly signed, is accepted.
			if status, raw, _ := e.push(e.pushBody(1, "list")); status != http.StatusOK {
				t.Fatalf("valid push: %d %s", status, raw)
			}
			// Signed GETs cover the query string.
			q := "table=lists"
			for _, c := range []struct {
				name  string
				query string
				opts  []opt
			}{
				{"query signed without parameters", q, []opt{withSignedQuery("")}},
				{"query signed with other parameters", q, []opt{withSignedQuery("table=todos")}},
				{"query parameters not sorted", "table=lists&limit=2", []opt{withSignedQuery("table=lists&limit=2")}},
			} {
				status, raw, d := e.do(e.request(http.MethodGet, "query", c.query, nil, c.opts...))
				if status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
					t.Fatalf("%s: %d %s", c.name, status, raw)
				}
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "query", "table=lists&limit=2", nil)); status != http.StatusOK {
				t.Fatalf("signed query: %d %s", status, raw)
			}
		})
	}
}

// TestReplay: a request is accepted once per nonce; a replay applies
// nothing even when the original was refused after authentication.
func TestReplay(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var refusing atomic.Bool
			refusing.Store(true)
			e := newEnv(t, kind, &envConfig{server: &server.Config{
				BeforePush: func(context.Context, bun.Tx, *server.PushInfo) error {
					if refusing.Load() {
						return fmt.Errorf("%w: maintenance", dbsync.ErrForbidden)
					}
					return nil
				},
			}})
			body := e.pushBody(1, "once")
			nonce := protocol.NewNonce()
			sent := time.Now()
			before := e.state()
			if status, raw, d := e.push(body, withNonce(nonce), withTime(sent)); status != http.StatusForbidden || d.Code != protocol.CodeForbidden {
				t.Fatalf("push refused by the hook: %d %s", status, raw)
			}
			e.unchanged(before, "refused push")
			refusing.Store(false)
			// The captured request, byte for byte.
			if status, raw, d := e.push(body, withNonce(nonce), withTime(sent)); status != http.StatusUnauthorized || d.Code != protocol.CodeReplay {
				t.Fatalf("replayed push: %d %s, want 401 replayed", status, raw)
			}
			e.unchanged(before, "replayed push")
			// The nonce with another body and a fresh signature.
			if status, raw, d := e.push(e.pushBody(2, "other"), withNonce(nonce)); status != http.StatusUnauthorized || d.Code != protocol.CodeReplay {
				t.Fatalf("reused nonce: %d %s, want 401 replayed", status, raw)
			}
			// ... and on another endpoint.
			if status, raw, d := e.do(e.request(http.MethodGet, "query", "table=lists", nil, withNonce(nonce))); status != http.StatusUnauthorized || d.Code != protocol.CodeReplay {
				t.Fatalf("reused nonce on query: %d %s", status, raw)
			}
			e.unchanged(before, "reused nonce")
			// A fresh nonce: the same push is applied, once.
			nonce2 := protocol.NewNonce()
			if status, raw, _ := e.push(body, withNonce(nonce2)); status != http.StatusOK {
				t.Fatalf("push with a fresh nonce: %d %s", status, raw)
			}
			after := e.state()
			if after.Versions != before.Versions+1 {
				t.Fatalf("versions %d→%d", before.Versions, after.Versions)
			}
			if status, raw, d := e.push(body, withNonce(nonce2)); status != http.StatusUnauthorized || d.Code != protocol.CodeReplay {
				t.Fatalf("replay of an accepted push: %d %s", status, raw)
			}
			e.unchanged(after, "replay of an accepted push")
			// Another node may use the same nonce.
			status, raw := e.register(`{}`)
			var b protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil {
				t.Fatal(status)
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "query", "table=lists", nil, withNonce(nonce2), withNode(b.Node.NodeID), withSecret(b.Node.Secret))); status != http.StatusOK {
				t.Fatalf("another node's request with the same nonce: %d %s", status, raw)
			}
		})
	}
}

// TestBadBodies: malformed or hostile push bodies are refused with 400 and
// the right code, and nothing is written.
func TestBadBodies(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			good := string(e.pushBody(2, "second"))
			op := func(table, row, cmd string) string {
				return fmt.Sprintf(`{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":1,"operations":[{"order":1,"table":%q,"row_id":%q,"command":%q}],"payload":{}}`, table, row, cmd)
			}
			withRow := func(table, row string) string {
				return fmt.Sprintf(`{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":1,"operations":[{"order":1,"table":%q,"row_id":"2","command":"i"}],"payload":{%q:[%s]}}`, table, table, row)
			}
			cases := []struct {
				name, body, code string
			}{
				{"empty object", `{}`, protocol.CodeBadRequest},
				{"null", `null`, protocol.CodeBadRequest},
				{"array", `[]`, protocol.CodeBadRequest},
				{"string", `"push"`, protocol.CodeBadRequest},
				{"truncated", good[:len(good)/2], protocol.CodeBadRequest},
				{"open brace", `{`, protocol.CodeBadRequest},
				{"not JSON", `push_id=1`, protocol.CodeBadRequest},
				{"trailing garbage", good + ` x`, protocol.CodeBadRequest},
				{"trailing object", good + `{}`, protocol.CodeBadRequest},
				{"two pushes", good + good, protocol.CodeBadRequest},
				{"push_id number", `{"push_id":5}`, protocol.CodeBadRequest},
				{"push_id not uuid", `{"push_id":"abc","operations":[]}`, protocol.CodeBadRequest},
				{"latest_version_id string", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":"1"}`, protocol.CodeBadRequest},
				{"latest_version_id float", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":1.5}`, protocol.CodeBadRequest},
				{"operations object", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","operations":{}}`, protocol.CodeBadRequest},
				{"operation order string", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","operations":[{"order":"1","table":"lists","row_id":"2","command":"i"}]}`, protocol.CodeBadRequest},
				{"payload array", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","payload":[]}`, protocol.CodeBadRequest},
				{"bad command", op("lists", "2", "x"), protocol.CodeBadRequest},
				{"upper-case command", op("lists", "2", "I"), protocol.CodeBadRequest},
				{"row id not an integer", op("lists", "2 OR 1=1", "i"), protocol.CodeBadRequest},
				{"row id overflow", op("lists", "9223372036854775808", "d"), protocol.CodeBadRequest},
				{"row id not a uuid", op("notes", "1", "d"), protocol.CodeBadRequest},
				{"unknown table", op("nope", "2", "i"), protocol.CodeUnknownTable},
				{"sync table", op("sync_nodes", "1", "d"), protocol.CodeUnknownTable},
				{"injection in table", op("todos; DROP TABLE todos; --", "1", "d"), protocol.CodeUnknownTable},
				{"quoted table", op(`"todos"`, "1", "d"), protocol.CodeUnknownTable},
				{"unknown payload table", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":1,"payload":{"nope":[{"id":1}]}}`, protocol.CodeUnknownTable},
				{"injection in payload table", `{"push_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","latest_version_id":1,"payload":{"lists\"; DROP TABLE lists; --":[{"id":1}]}}`, protocol.CodeUnknownTable},
				{"unknown column", withRow("lists", `{"id":2,"name":"n","color":"red"}`), protocol.CodeUnknownColumn},
				{"injection in column", withRow("lists", `{"id":2,"name":"n","name\" = 'x'; DROP TABLE todos; --":1}`), protocol.CodeUnknownColumn},
				{"missing column", withRow("lists", `{"id":2}`), protocol.CodeBadRequest},
				{"duplicate column", withRow("lists", `{"id":2,"name":"a","name":"b"}`), protocol.CodeBadRequest},
				{"id as string", withRow("lists", `{"id":"2","name":"n"}`), protocol.CodeBadRequest},
				{"id as float", withRow("lists", `{"id":2.0,"name":"n"}`), protocol.CodeBadRequest},
				{"id overflow", withRow("lists", `{"id":92233720368547758070,"name":"n"}`), protocol.CodeBadRequest},
				{"name as number", withRow("lists", `{"id":2,"name":5}`), protocol.CodeBadRequest},
				{"name as object", withRow("lists", `{"id":2,"name":{"$ne":null}}`), protocol.CodeBadRequest},
				{"bool as string", withRow("todos", `{"id":2,"list_id":1,"title":"t","done":"true"}`), protocol.CodeBadRequest},
				{"row not an object", withRow("lists", `[2,"n"]`), protocol.CodeBadRequest},
				{"row null", withRow("lists", `null`), protocol.CodeBadRequest},
				{"row twice", withRow("lists", `{"id":2,"name":"a"},{"id":2,"name":"b"}`), protocol.CodeBadRequest},
				{"bad time", withRow("notes", `{"id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","body":"b","created":"yesterday","data":null,"score":null,"tag":null,"count":0,"meta":null}`), protocol.CodeBadRequest},
				{"bad base64", withRow("notes", `{"id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","body":"b","created":"2024-01-01T00:00:00Z","data":"!!","score":null,"tag":null,"count":0,"meta":null}`), protocol.CodeBadRequest},
				{"int32 overflow", withRow("notes", `{"id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":2147483648,"meta":null}`), protocol.CodeBadRequest},
				{"float overflow", withRow("notes", `{"id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":1e999,"tag":null,"count":0,"meta":null}`), protocol.CodeBadRequest},
				{"deep nesting", withRow("notes", `{"id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), protocol.CodeBadRequest},
			}
			for _, c := range cases {
				before := e.state()
				status, raw, d := e.push([]byte(c.body))
				if status != http.StatusBadRequest || d.Code != c.code {
					t.Fatalf("%s: %d %s, want 400 %s", c.name, status, raw, c.code)
				}
				e.unchanged(before, c.name)
			}
			// Other endpoints decode their bodies as strictly.
			for _, c := range []struct{ name, endpoint, body string }{
				{"pull not JSON", "pull", `{`},
				{"pull wrong type", "pull", `{"latest_version_id":"1"}`},
				{"pull chunk size string", "pull", `{"chunk_size":"10"}`},
				{"pull trailing", "pull", `{}{}`},
				{"pull bad push id", "pull", `{"push_id":"1; DROP TABLE sync_pushes"}`},
			} {
				before := e.state()
				status, raw, d := e.do(e.request(http.MethodPost, c.endpoint, "", []byte(c.body)))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s: %d %s", c.name, status, raw)
				}
				e.unchanged(before, c.name)
			}
			before := e.state()
			for _, body := range []string{`[1]`, `{"extra_data":1}{}`, `{`} {
				if status, raw := e.register(body); status != http.StatusBadRequest {
					t.Fatalf("register %s: %d %s", body, status, raw)
				}
			}
			e.unchanged(before, "bad register")
			if status, raw, d := e.do(e.request(http.MethodGet, "repair", "full=1", nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
				t.Fatalf("repair with parameters: %d %s", status, raw)
			}
		})
	}
}

// TestHostileValues: values that look like SQL are stored and read back
// literally.
func TestHostileValues(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			values := []string{
				`x'); DROP TABLE todos; --`,
				`'; DELETE FROM lists; --`,
				`" OR ""="`,
				`\'; DROP TABLE sync_versions; --`,
				`?TableName ?0 ? $1 %s`,
				"tab\tnewline\nunicode é ☃ 🎉",
			}
			for i, v := range values {
				id := int64(i + 1)
				if status, raw, _ := e.push(e.pushBody(id, v)); status != http.StatusOK {
					t.Fatalf("push %q: %d %s", v, status, raw)
				}
				q := url.Values{"table": {"lists"}, "eq.name": {v}}.Encode()
				status, raw, _ := e.do(e.request(http.MethodGet, "query", q, nil))
				if status != http.StatusOK {
					t.Fatalf("query %q: %d %s", v, status, raw)
				}
				var resp protocol.QueryResponse
				if err := json.Unmarshal(raw, &resp); err != nil {
					t.Fatal(err)
				}
				want, _ := json.Marshal(map[string]any{"id": id, "name": v})
				if len(resp.Rows) != 1 || string(resp.Rows[0]) != string(want) {
					t.Fatalf("query %q: %s, want one row %s", v, raw, want)
				}
				var stored testmodels.List
				if err := e.s.DB.NewSelect().Model(&stored).Where("id = ?", id).Scan(ctx); err != nil || stored.Name != v {
					t.Fatalf("stored %+v (%v), want name %q", stored, err, v)
				}
			}
			for _, table := range []string{"lists", "todos", "notes", "sync_versions", "sync_nodes", "sync_pushes"} {
				if _, err := e.s.DB.NewSelect().Table(table).Count(ctx); err != nil {
					t.Fatalf("table %s: %v", table, err)
				}
			}
			if n, _ := e.s.DB.NewSelect().Table("lists").Count(ctx); n != int64(len(values)) {
				t.Fatalf("%d lists, want %d", n, len(values))
			}
			// Hostile query parameters.
			for _, c := range []struct {
				query url.Values
				code  string
			}{
				{url.Values{"table": {"lists;DROP TABLE lists"}}, protocol.CodeUnknownTable},
				{url.Values{"table": {`lists" --`}}, protocol.CodeUnknownTable},
				{url.Values{"table": {"lists"}, "eq.name) OR 1=1 --": {"x"}}, protocol.CodeUnknownColumn},
				{url.Values{"table": {"lists"}, `eq."name"`: {"x"}}, protocol.CodeUnknownColumn},
				{url.Values{"table": {"lists"}, "eq.id": {"1 OR 1=1"}}, protocol.CodeBadRequest},
				{url.Values{"table": {"lists"}, "after": {"1 OR 1=1"}}, protocol.CodeBadRequest},
				{url.Values{"table": {"lists"}, "limit": {"-1"}}, protocol.CodeBadRequest},
				{url.Values{"table": {"lists"}, "limit": {"1e3"}}, protocol.CodeBadRequest},
				{url.Values{"table": {"lists", "todos"}}, protocol.CodeBadRequest},
				{url.Values{"table": {"lists"}, "order": {"name"}}, protocol.CodeBadRequest},
				{url.Values{"eq.name": {"x"}}, protocol.CodeBadRequest},
			} {
				status, raw, d := e.do(e.request(http.MethodGet, "query", c.query.Encode(), nil))
				if status != http.StatusBadRequest || d.Code != c.code {
					t.Fatalf("query %s: %d %s, want 400 %s", c.query, status, raw, c.code)
				}
			}
			q := url.Values{"table": {"lists"}, "eq.name": {`' OR '1'='1`}}.Encode()
			status, raw, _ := e.do(e.request(http.MethodGet, "query", q, nil))
			if status != http.StatusOK || string(raw) != "{\"rows\":[]}\n" {
				t.Fatalf("query for ' OR '1'='1: %d %s, want no rows", status, raw)
			}
		})
	}
}

// TestDatabaseRefusedValues: values a database cannot store, or cannot
// read back, are the request's fault (400), and leave the server usable.
func TestDatabaseRefusedValues(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			const id = "6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"
			note := func(body, created, tag string) []byte {
				return []byte(fmt.Sprintf(`{"push_id":"%s","latest_version_id":%d,"operations":[{"order":1,"table":"notes","row_id":"%s","command":"i"}],`+
					`"payload":{"notes":[{"id":"%s","body":%s,"created":%q,"data":null,"score":null,"tag":%s,"count":0,"meta":null}]}}`,
					newUUID(), e.latest(), id, id, body, created, tag))
			}
			for _, c := range []struct{ name, body, created, tag string }{
				{"NUL in text", `"a\u0000b"`, "2024-01-01T00:00:00Z", `null`},
				{"NUL in nullable text", `"ok"`, "2024-01-01T00:00:00Z", `"\u0000"`},
				{"year 0", `"ok"`, "0000-01-01T00:00:00Z", `null`},
				{"year -1 in UTC", `"ok"`, "0000-01-01T00:30:00+01:00", `null`},
				{"year 10000 in UTC", `"ok"`, "9999-12-31T23:59:59-01:00", `null`},
			} {
				before := e.state()
				status, raw, d := e.push(note(c.body, c.created, c.tag))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("%s: %d %s, want 400 bad_request", c.name, status, raw)
				}
				e.unchanged(before, c.name)
			}
			// The extreme times that are valid round-trip.
			for _, created := range []string{"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+01:00"} {
				if status, raw, _ := e.push(note(`"edge"`, created, `null`)); status != http.StatusOK {
					t.Fatalf("created %s: %d %s", created, status, raw)
				}
			}
			for _, q := range []string{"table=notes&eq.body=a%00b", "table=notes&eq.tag=%00", "table=notes&eq.created=0000-01-01T00:00:00Z"} {
				status, raw, d := e.do(e.request(http.MethodGet, "query", q, nil))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("query %s: %d %s, want 400 bad_request", q, status, raw)
				}
			}
			// The table can still be read whole.
			status, raw, _ := e.do(e.request(http.MethodGet, "repair", "", nil))
			if status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Fatalf("repair: %d %s", status, raw)
			}
			status, raw, _ = e.do(e.request(http.MethodPost, "pull", "", []byte(`{}`)))
			if status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Fatalf("pull: %d %s", status, raw)
			}

		})
	}
}

// TestJSONNulEscape: JSON column values are stored as sent, or refused;
// never altered, never a server error. Both a \u0000 escape and the six
// characters \u0000 in a string (an escaped backslash) are legal JSON.
func TestJSONNulEscape(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			var bugs []string
			for i, meta := range []string{`{"k":"a\u0000b"}`, `{"k":"a\\u0000b"}`, `["\\\u0000"]`} {
				id := fmt.Sprintf("6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b%02d", i)
				body := []byte(fmt.Sprintf(`{"push_id":"%s","latest_version_id":%d,"operations":[{"order":1,"table":"notes","row_id":"%s","command":"i"}],`+
					`"payload":{"notes":[{"id":"%s","body":"json","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":%s}]}}`,
					newUUID(), e.latest(), id, id, meta))
				before := e.state()
				status, raw, _ := e.push(body)
				switch {
				case status == http.StatusOK:
					var n testmodels.Note
					if err := e.s.DB.NewSelect().Model(&n).Where("id = ?", id).Scan(ctx); err != nil {
						t.Fatal(err)
					}
					var got, want any
					_ = json.Unmarshal(n.Meta, &got)
					_ = json.Unmarshal([]byte(meta), &want)
					if !reflect.DeepEqual(got, want) {
						bugs = append(bugs, fmt.Sprintf("pushed %s, stored %s", meta, n.Meta))
					}
				case status == http.StatusBadRequest:
					e.unchanged(before, "refused JSON")
				case status >= 500:
					e.unchanged(before, "failed JSON")
					bugs = append(bugs, fmt.Sprintf("pushed %s: %d %s", meta, status, raw))
				default:
					t.Fatalf("JSON %s: %d %s", meta, status, raw)
				}
			}
			if len(bugs) > 0 {
				t.Fatalf("JSON values altered or failing (bun rewrites \\u0000 in JSON): %s", strings.Join(bugs, "; "))
			}
		})
	}
}

// TestLimitsAndRoutes: body limits (413), unknown routes (404), wrong
// methods (405), pushes to pull-only tables (400).
func TestLimitsAndRoutes(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{
				handlers: &handlers.Config{MaxPushBytes: 600, MaxPullBytes: 300, MaxBodyBytes: 100},
				models:   []any{(*testmodels.List)(nil), (*testmodels.Todo)(nil), dbsync.PullOnly((*testmodels.Note)(nil))},
			})
			before := e.state()
			big := e.pushBody(1, strings.Repeat("x", 600))
			if status, raw, d := e.push(big); status != http.StatusRequestEntityTooLarge || d.Code != protocol.CodeTooLarge {
				t.Fatalf("push of %d bytes: %d %s", len(big), status, raw)
			}
			// Over the limit and unsigned: refused for its headers, before
			// its body is read.
			if status, raw, d := e.push(big, unsigned()); status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
				t.Fatalf("unsigned push of %d bytes: %d %s", len(big), status, raw)
			}
			e.unchanged(before, "push over the limit")
			if status, raw, _ := e.push(e.pushBody(1, "small")); status != http.StatusOK {
				t.Fatalf("push under the limit: %d %s", status, raw)
			}
			// A pull to a server without scopes is bounded by MaxBodyBytes
			// (MaxPullBytes is for held keys: TestPullBodyBound).
			pullBody := []byte(`{"latest_version_id":0}` + strings.Repeat(" ", 200))
			if status, raw, d := e.do(e.request(http.MethodPost, "pull", "", pullBody)); status != http.StatusRequestEntityTooLarge || d.Code != protocol.CodeTooLarge {
				t.Fatalf("pull of %d bytes: %d %s", len(pullBody), status, raw)
			}
			pullBody = []byte(`{"latest_version_id":0}` + strings.Repeat(" ", 50))
			if status, raw, _ := e.do(e.request(http.MethodPost, "pull", "", pullBody)); status != http.StatusOK {
				t.Fatalf("pull of %d bytes, under MaxBodyBytes: %d %s", len(pullBody), status, raw)
			}
			if status, raw := e.register(`{"extra_data":"` + strings.Repeat("x", 100) + `"}`); status != http.StatusRequestEntityTooLarge {
				t.Fatalf("big register: %d %s", status, raw)
			}

			// Pull-only table.
			before = e.state()
			body := fmt.Sprintf(`{"push_id":"%s","latest_version_id":%d,"operations":[{"order":1,"table":"notes","row_id":"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e","command":"d"}]}`, newUUID(), e.latest())
			if status, raw, d := e.push([]byte(body)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "pull-only") {
				t.Fatalf("push to a pull-only table: %d %s", status, raw)
			}
			e.unchanged(before, "push to a pull-only table")

			for _, c := range []struct {
				method, path string
				status       int
			}{
				{http.MethodGet, "/nope", 404},
				{http.MethodPost, "/", 404},
				{http.MethodPost, "/push/extra", 404},
				{http.MethodPost, "/PUSH", 404},
				{http.MethodGet, "/push", 405},
				{http.MethodPut, "/push", 405},
				{http.MethodGet, "/register", 405},
				{http.MethodDelete, "/pull", 405},
				{http.MethodPost, "/query", 405},
				{http.MethodPost, "/repair", 405},
			} {
				req, err := http.NewRequestWithContext(ctx, c.method, e.url+c.path, strings.NewReader(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				status, raw, d := e.do(req)
				if status != c.status || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, status, raw, c.status)
				}
			}
			e.unchanged(before, "routes")
		})
	}
}

// TestRegisterHook: the server's AuthorizeRegister refuses (403) or
// attaches an application user id to the node.
func TestRegisterHook(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []string
			e := newEnv(t, kind, &envConfig{server: &server.Config{
				AuthorizeRegister: func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					req := info.Request
					mu.Lock()
					seen = append(seen, string(req.ExtraData))
					mu.Unlock()
					var extra struct{ Token, User string }
					if len(req.ExtraData) > 0 {
						if err := json.Unmarshal(req.ExtraData, &extra); err != nil {
							return nil, err
						}
					}
					if extra.Token != "open sesame" {
						return nil, errors.New("bad token")
					}
					if extra.User == "" {
						return nil, nil
					}
					return &server.Registration{UserID: &extra.User}, nil
				},
			}, handlers: &handlers.Config{}})
			before := e.state()
			for _, body := range []string{`{}`, ``, `{"extra_data":{"token":"wrong"}}`, `{"extra_data":"x"}`} {
				status, raw := e.register(body)
				var eb protocol.ErrorBody
				if status != http.StatusForbidden || json.Unmarshal(raw, &eb) != nil || eb.Error.Code != protocol.CodeForbidden {
					t.Fatalf("register %q: %d %s, want 403 forbidden", body, status, raw)
				}
			}
			e.unchanged(before, "refused registrations")
			status, raw := e.register(`{"extra_data":{"token":"open sesame","user":"user-42'; --"}}`)
			var rr protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &rr) != nil {
				t.Fatalf("register: %d %s", status, raw)
			}
			if rr.Node.RegistryUserID == nil || *rr.Node.RegistryUserID != "user-42'; --" || len(rr.Node.Secret) != 64 || rr.Node.NodeID == 0 {
				t.Fatalf("registered node %+v", rr.Node)
			}
			var n models.Node
			if err := e.s.DB.NewSelect().Model(&n).Where("node_id = ?", rr.Node.NodeID).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if n.RegistryUserID == nil || *n.RegistryUserID != "user-42'; --" || n.Secret != rr.Node.Secret {
				t.Fatalf("stored node %+v", n)
			}
			status, raw = e.register(`{"extra_data":{"token":"open sesame"}}`)
			if status != http.StatusOK || json.Unmarshal(raw, &rr) != nil || rr.Node.RegistryUserID != nil {
				t.Fatalf("register without user: %d %s", status, raw)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 7 || seen[len(seen)-1] != `{"token":"open sesame"}` {
				t.Fatalf("hook saw %q", seen)
			}
		})
	}
}

// TestRevokedNode: a node whose row an administrator deleted from
// sync_nodes is refused from then on, by every server process.
func TestRevokedNode(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.do(e.request(http.MethodGet, "query", "table=lists", nil)); status != http.StatusOK {
				t.Fatalf("query before revocation: %d %s", status, raw)
			}
			if _, err := e.s.DB.NewDelete().Model((*models.Node)(nil)).Where("node_id = ?", e.node.NodeID).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			before := e.state()
			status, raw, d := e.push(e.pushBody(1, "after revocation"))
			if status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
				t.Fatalf("push by a revoked node: %d %s, want 401 unauthorized", status, raw)
			}
			e.unchanged(before, "push by a revoked node")
		})
	}
}

// TestMalformedQuery: a query string that does not parse as
// application/x-www-form-urlencoded is refused 400 bad_request, and
// nothing is written. url.URL.Query drops the pairs it cannot parse, so
// that, unchecked, "repair?%zz" passed for a repair without parameters
// and "push-status?push_id=…&%zz" for one with a single parameter (the
// dropped pairs are not signed either).
func TestMalformedQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.KindSQLite, nil)
	if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
		t.Fatalf("push: %d %s", status, raw)
	}
	for _, c := range []struct{ method, endpoint, query string }{
		{http.MethodGet, "repair", "%zz"},
		{http.MethodGet, "repair", "a=1;b=2"},
		{http.MethodGet, "push-status", "push_id=" + newUUID() + "&%zz"},
		{http.MethodGet, "query", "table=lists&%zz"},
		{http.MethodGet, "watch", "after=0&%zz"},
		{http.MethodPost, "pull", "%zz"},
	} {
		var body []byte
		if c.method == http.MethodPost {
			body = []byte(`{"latest_version_id":0}`)
		}
		before := e.state()
		status, raw, d := e.do(e.request(c.method, c.endpoint, c.query, body))
		if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
			t.Fatalf("%s %s?%s: %d %s, want 400 bad_request", c.method, c.endpoint, c.query, status, raw)
		}
		e.unchanged(before, c.endpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/register?%zz", strings.NewReader(`{"extra_data":{"token":"open sesame"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, e.s.Reg.Fingerprint())
	before := e.state()
	if status, raw, d := e.do(req); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
		t.Fatalf("register?%%zz: %d %s, want 400 bad_request", status, raw)
	}
	e.unchanged(before, "register")
}
