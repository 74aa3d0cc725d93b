package handlers_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestPushDeleteReferencedParent: a push deleting a row that a server row
// it neither deletes nor rewrites still references is refused with 409
// foreign_key naming both rows (docs/protocol.md, the push's checks), and
// writes nothing. It was answered push_rejected.
func TestPushDeleteReferencedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.rawPush(`{"order":1,"table":"lists","row_id":"1","command":"i"},{"order":2,"table":"todos","row_id":"5","command":"i"}`,
				`"lists":[{"id":1,"name":"home"}],"todos":[{"id":5,"list_id":1,"title":"milk","done":false}]`)); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			before := e.state()
			status, raw, d := e.push(e.rawPush(`{"order":1,"table":"lists","row_id":"1","command":"d"}`, ""))
			if status != http.StatusConflict || d.Code != protocol.CodeForeignKey || !strings.Contains(d.Message, "lists 1") || !strings.Contains(d.Message, "todos 5") {
				t.Fatalf("a delete of a referenced parent: %d %s, want 409 foreign_key naming lists 1 and todos 5", status, raw)
			}
			e.unchanged(before, "a delete of a referenced parent")
		})
	}
}

// TestPushDeleteReferencedParentScoped: on a server with scopes, a push
// deleting a row that a row the node may read still references is
// answered 409 pull_needed, also when the push is based on the latest
// version (the node does not hold that row: its pull brings it), and
// writes nothing; docs/protocol.md says so where it lists the push's
// checks, which told a client to expect foreign_key, a final refusal.
func TestPushDeleteReferencedParentScoped(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	for _, want := range []string{
		"On a server with scopes, a deleted row that a row the node may read still references is `409 pull_needed` instead, also for a push based on the latest version",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/protocol.md does not say %q", want)
		}
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newScopedEnv(t, kind)
			e.mustPush(`{"order":1,"table":"projects","row_id":"1","command":"i"},{"order":2,"table":"tasks","row_id":"1","command":"i"}`,
				`"projects":[{"id":1,"owner_id":"ann","name":"p"}],"tasks":[{"id":1,"project_id":1,"title":"t"}]`)
			before := e.state()
			status, raw, d := e.push(e.rawPush(`{"order":3,"table":"projects","row_id":"1","command":"d"}`, ""))
			if status != http.StatusConflict || d.Code != protocol.CodePullNeeded || !strings.Contains(d.Message, "projects 1") || !strings.Contains(d.Message, "tasks 1") {
				t.Fatalf("a delete of a parent of a readable row, at the latest version: %d %s, want 409 pull_needed naming projects 1 and tasks 1", status, raw)
			}
			e.unchanged(before, "a delete of a referenced parent")
		})
	}
}

// protocolDoc returns docs/protocol.md, with its lines joined by single
// spaces (a sentence may wrap anywhere).
func protocolDoc(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(doc)), " ")
}
