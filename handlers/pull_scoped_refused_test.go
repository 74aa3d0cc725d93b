package handlers_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestScopedPullRefusedWritesNothing: on a server with scopes, a pull
// naming an unanswered push id that is refused for its held keys (absent:
// 400 held_keys_needed; of an unknown table: 400 unknown_table; a key not
// of the table's kind: 400 bad_request) writes nothing: the push id is not
// marked abandoned, and the node's push, resent, is applied.
func TestScopedPullRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newScopedEnv(t, kind)
			s := e.s
			for i, c := range []struct {
				name, held string
				code       string
			}{
				{"no held keys", ``, protocol.CodeHeldKeysNeeded},
				{"held keys of an unknown table", `,"held":{"nope":[]}`, protocol.CodeUnknownTable},
				{"held key not an integer", `,"held":{"projects":["x"]}`, protocol.CodeBadRequest},
			} {
				// The node's push, whose answer it lost.
				latest := e.latest()
				row, _ := json.Marshal(map[string]any{"id": 10 + i, "owner_id": "ann", "name": c.name})
				pushBody, _ := json.Marshal(&protocol.PushRequest{
					PushID: uuid.NewString(), LatestVersionID: &latest,
					Operations: []protocol.Operation{{Order: int64(i + 1), Table: "projects", RowID: jsonInt(10 + i), Command: models.Insert}},
					Payload:    protocol.Payload{"projects": {row}},
				})
				var push protocol.PushRequest
				if err := json.Unmarshal(pushBody, &push); err != nil {
					t.Fatal(err)
				}
				before := e.state()
				pushes, err := s.DB.NewSelect().Model((*models.Push)(nil)).Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pull := `{"push_id":"` + push.PushID + `","latest_version_id":` + jsonInt(int(latest)) + c.held + `}`
				status, raw, d := e.do(e.request(http.MethodPost, "pull", "", []byte(pull)))
				if status != http.StatusBadRequest || d.Code != c.code {
					t.Fatalf("%s: pull %s: %d %s, want 400 %s", c.name, pull, status, raw, c.code)
				}
				after, err := s.DB.NewSelect().Model((*models.Push)(nil)).Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if after != pushes {
					t.Errorf("%s: the refused pull wrote sync_pushes: %d rows → %d", c.name, pushes, after)
				}
				e.unchanged(before, c.name)
				if status, raw, _ := e.push(pushBody); status != http.StatusOK {
					t.Fatalf("%s: the push resent after the refused pull: %d %s, want 200", c.name, status, raw)
				}
			}
		})
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }
