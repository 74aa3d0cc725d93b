package handlers_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPushPayloadMatchesOperations: a push whose payload lacks the row of
// an insert or update, holds rows no operation names, or names a row twice
// is refused (400, naming the rows) and writes nothing; it was accepted
// with the rows left out before.
func TestPushPayloadMatchesOperations(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			push := func(ops, payload string) string {
				return string(e.rawPush(ops, payload))
			}
			op := func(order int, table, row, cmd string) string {
				return fmt.Sprintf(`{"order":%d,"table":%q,"row_id":%q,"command":%q}`, order, table, row, cmd)
			}
			list := func(id int, name string) string { return fmt.Sprintf(`{"id":%d,"name":%q}`, id, name) }
			for _, c := range []struct {
				name, body string
				names      []string // in the message
			}{
				{"insert without its row", push(op(1, "lists", "7", "i"), ``), []string{"lists 7"}},
				{"update without its row", push(op(1, "lists", "1", "u"), `"lists":[]`), []string{"lists 1"}},
				{"one of two rows missing", push(op(1, "lists", "2", "i")+","+op(2, "todos", "3", "i"), `"lists":[`+list(2, "two")+`]`), []string{"todos 3"}},
				{"row under another table", push(op(1, "lists", "2", "i"), `"todos":[{"id":2,"list_id":1,"title":"t","done":false}]`), []string{"lists 2"}},
				{"row of another key", push(op(1, "lists", "2", "i"), `"lists":[`+list(3, "three")+`]`), []string{"lists 2"}},
				{"row nobody names", push(op(1, "lists", "2", "i"), `"lists":[`+list(2, "two")+`,`+list(3, "three")+`]`), []string{"lists 3"}},
				{"row of a delete", push(op(1, "lists", "1", "d"), `"lists":[`+list(1, "one")+`]`), []string{"lists 1"}},
				{"insert then update", push(op(1, "lists", "2", "i")+","+op(2, "lists", "2", "u"), `"lists":[`+list(2, "two")+`]`), []string{"lists 2", "1", "2"}},
				{"insert then delete", push(op(1, "lists", "2", "i")+","+op(2, "lists", "2", "d"), `"lists":[`+list(2, "two")+`]`), []string{"lists 2"}},
				{"same row, two spellings", push(op(1, "lists", "2", "d")+","+op(2, "lists", "02", "d"), ``), []string{"lists 2"}},
				{"same UUID, two cases", push(op(1, "notes", "6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e", "d")+","+op(2, "notes", "6D4F0A61-3C56-4AB4-9C39-5A0F1E1C1B3E", "d"), ``), []string{"notes 6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"}},
			} {
				before := e.state()
				status, raw, d := e.push([]byte(c.body))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s: %d %s, want 400 bad_request", c.name, status, raw)
				}
				for _, n := range c.names {
					if !strings.Contains(d.Message, n) {
						t.Fatalf("%s: message %q does not name %q", c.name, d.Message, n)
					}
				}
				e.unchanged(before, c.name)
			}
			// Each row once, with its row: accepted.
			body := push(op(1, "lists", "2", "i")+","+op(2, "todos", "3", "i")+","+op(3, "lists", "1", "d"),
				`"lists":[`+list(2, "two")+`],"todos":[{"id":3,"list_id":2,"title":"t","done":false}]`)
			if status, raw, _ := e.push([]byte(body)); status != http.StatusOK {
				t.Fatalf("valid push: %d %s", status, raw)
			}
		})
	}
}

// TestPushInvalidText: text a JSON decoder would alter (invalid UTF-8, an
// unpaired surrogate escape) is refused with 400 naming table, key and
// column, in every kind of text column; it was stored with U+FFFD before.
// A real U+FFFD is stored as sent.
func TestPushInvalidText(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			const id = "6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"
			note := func(body, tag, meta string) string {
				return (fmt.Sprintf(`{"push_id":"%s","latest_version_id":%d,"operations":[{"order":1,"table":"notes","row_id":"%s","command":"i"}],`+
					`"payload":{"notes":[{"id":"%s","body":%s,"created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":%s,"count":0,"meta":%s}]}}`,
					newUUID(), e.latest(), id, id, body, tag, meta))
			}
			for _, c := range []struct{ name, column, body string }{
				{"invalid byte in text", "body", note("\"a\xffb\"", `null`, `null`)},
				{"truncated sequence in text", "body", note("\"caf\xc3\"", `null`, `null`)},
				{"encoded surrogate in text", "body", note("\"\xed\xa0\x80\"", `null`, `null`)},
				{"lone high surrogate escape", "body", note(`"a\ud800b"`, `null`, `null`)},
				{"lone low surrogate escape", "tag", note(`"ok"`, `"\udc00"`, `null`)},
				{"reversed surrogates", "tag", note(`"ok"`, `"\ude00\ud83d"`, `null`)},
				{"invalid byte in JSON", "meta", note(`"ok"`, `null`, "{\"k\":\"\xff\"}")},
				{"surrogate escape in JSON", "meta", note(`"ok"`, `null`, `["\ud800"]`)},
			} {
				before := e.state()
				status, raw, d := e.push([]byte(c.body))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s: %d %s, want 400 bad_request", c.name, status, raw)
				}
				if !strings.Contains(d.Message, "notes."+c.column) || !strings.Contains(d.Message, id) {
					t.Fatalf("%s: message %q does not name notes.%s of row %s", c.name, d.Message, c.column, id)
				}
				e.unchanged(before, c.name)
			}
			// U+FFFD itself, an escaped pair and an escaped backslash are text
			// like any other: stored as sent.
			if status, raw, _ := e.push([]byte(note(`"\ufffd\ud83d\ude00\\ud800"`, `"`+"\uFFFD"+`"`, `{"k":"\ud83d\ude00"}`))); status != http.StatusOK {
				t.Fatalf("valid text: %d %s", status, raw)
			}
			var n testmodels.Note
			if err := e.s.DB.NewSelect().Model(&n).Where("id = ?", id).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if n.Body != "\uFFFD😀\\ud800" || n.Tag.String != "\uFFFD" || !bytes.Contains(n.Meta, []byte("😀")) && !bytes.Contains(n.Meta, []byte(`\ud83d\ude00`)) {
				t.Fatalf("stored %q, %q, %s", n.Body, n.Tag.String, n.Meta)
			}
		})
	}
}

// TestPushForeignKeyNamed: a push leaving a row that references a missing
// row is refused (409 foreign_key) with the table, key and referenced
// table from the registry, never the database's text (PostgreSQL's was
// sent before).
func TestPushForeignKeyNamed(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			for _, c := range []struct{ name, ops, payload string }{
				{"insert under a missing parent", `{"order":1,"table":"todos","row_id":"5","command":"i"}`,
					`"todos":[{"id":5,"list_id":99,"title":"orphan","done":false}]`},
				{"update under a missing parent", `{"order":1,"table":"todos","row_id":"5","command":"u"}`,
					`"todos":[{"id":5,"list_id":99,"title":"orphan","done":false}]`},
			} {
				body := e.rawPush(c.ops, c.payload)
				before := e.state()
				status, raw, d := e.push(body)
				if status != http.StatusConflict || d.Code != protocol.CodeForeignKey {
					t.Fatalf("%s: %d %s, want 409 foreign_key", c.name, status, raw)
				}
				dbtest.NoDatabaseText(t, c.name, d.Message)
				for _, want := range []string{"todos 5", "lists 99"} {
					if !strings.Contains(d.Message, want) {
						t.Fatalf("%s: message %q does not name %q", c.name, d.Message, want)
					}
				}
				e.unchanged(before, c.name)
			}
		})
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnknownNodeAnswer: a request from an unregistered node is answered
// exactly as one with a wrong signature (code and message), so node ids
// cannot be probed; the server's log tells the two apart.
func TestUnknownNodeAnswer(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var log syncBuffer
			e := newEnv(t, kind, &envConfig{server: &server.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))}})
			answers := map[string]protocol.ErrorDetail{}
			for name, opts := range map[string][]opt{
				"unknown node":    {withNode(e.node.NodeID + 1000)},
				"wrong signature": {withSecret("not the secret")},
			} {
				before := e.state()
				status, raw, d := e.push(e.pushBody(1, "x"), opts...)
				if status != http.StatusUnauthorized {
					t.Fatalf("%s: %d %s, want 401", name, status, raw)
				}
				answers[name] = d
				e.unchanged(before, name)
			}
			if u, w := answers["unknown node"], answers["wrong signature"]; u.Code != w.Code || u.Message != w.Message {
				t.Fatalf("unknown node answered %+v, wrong signature %+v: they must be the same", answers["unknown node"], answers["wrong signature"])
			}
			if d := answers["unknown node"]; d.Code != protocol.CodeUnauthorized {
				t.Fatalf("code %q, want unauthorized", d.Code)
			}
			logged := log.String()
			if !strings.Contains(logged, "server: unknown node") || !strings.Contains(logged, "server: bad signature") ||
				!strings.Contains(logged, fmt.Sprint(e.node.NodeID+1000)) {
				t.Fatalf("the log does not tell an unknown node from a bad signature:\n%s", logged)
			}
		})
	}
}
