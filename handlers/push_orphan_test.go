package handlers_test

import (
	"net/http"
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
