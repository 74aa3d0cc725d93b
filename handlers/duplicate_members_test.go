package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestDuplicateMembers: a request body's member named twice is read as
// its last copy, but a table named twice in a payload and a column named
// twice in a row are refused with 400 bad_request, nothing written, as
// docs/protocol.md ("Conventions") says. The doc said the server reads
// the last of every member named twice.
func TestDuplicateMembers(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	want := "the server reads the last of a member named twice, but refuses a table named twice in a `payload` and a column named twice in a row (`400 bad_request`)"
	if !strings.Contains(doc, want) {
		t.Errorf("docs/protocol.md does not say %q", want)
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			for _, c := range []struct{ name, ops, payload string }{
				{"a table named twice in the payload", `{"order":1,"table":"lists","row_id":"2","command":"i"}`,
					`"lists":[{"id":1,"name":"a"}],"lists":[{"id":2,"name":"b"}]`},
				{"a column named twice in a row", `{"order":1,"table":"lists","row_id":"2","command":"i"}`,
					`"lists":[{"id":2,"name":"a","name":"b"}]`},
			} {
				before := e.state()
				status, raw, d := e.push(e.rawPush(c.ops, c.payload))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s: %d %s, want 400 bad_request", c.name, status, raw)
				}
				e.unchanged(before, c.name)
			}
			// Another member named twice: the last copy counts.
			body := strings.Replace(string(e.rawPush(`{"order":1,"table":"todos","table":"lists","row_id":"2","command":"i"}`, `"lists":[{"id":2,"name":"b"}]`)),
				`{"push_id"`, `{"push_id":"not a push id","push_id"`, 1)
			if status, raw, _ := e.push([]byte(body)); status != http.StatusOK {
				t.Fatalf("members named twice outside payload rows: %d %s, want 200", status, raw)
			}
		})
	}
}
