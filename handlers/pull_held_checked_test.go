package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestPullHeldChecked: a scoped server refuses a pull whose held keys
// name a table the node does not pull (400 unknown_table) or a key that
// cannot be one of its table's (400 bad_request), though it ignores the
// same in deleted, as docs/protocol.md says. The doc said only that
// deleted ignores them, and a client listing every table it tracks in
// held was refused.
func TestPullHeldChecked(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	want := "Unlike `deleted`, `held` is checked: a scoped server refuses a table the node does not pull (push-only or unknown: `400 unknown_table`) and a key that cannot be one of its table's (`400 bad_request`)."
	if !strings.Contains(doc, want) {
		t.Errorf("docs/protocol.md does not say %q", want)
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newScopedEnv(t, kind)
			all := `"tags":[],"projects":[],"members":[],"tasks":[]`
			pull := func(body string) (int, []byte, protocol.ErrorDetail) {
				t.Helper()
				return e.do(e.request(http.MethodPost, "pull", "", []byte(body)))
			}
			if status, raw, _ := pull(`{"held":{` + all + `},"deleted":{"nope":["1"],"projects":["x"]}}`); status != http.StatusOK {
				t.Fatalf("deleted naming an unknown table and a malformed key: %d %s, want 200", status, raw)
			}
			for _, c := range []struct{ name, body, code string }{
				{"an unknown table", `{"held":{` + all + `,"nope":[]}}`, protocol.CodeUnknownTable},
				{"a malformed key", `{"held":{"tags":[],"projects":["x"],"members":[],"tasks":[]}}`, protocol.CodeBadRequest},
			} {
				before := e.state()
				status, raw, d := pull(c.body)
				if status != http.StatusBadRequest || d.Code != c.code {
					t.Fatalf("held naming %s: %d %s, want 400 %s", c.name, status, raw, c.code)
				}
				e.unchanged(before, c.name)
			}
		})
	}
}
