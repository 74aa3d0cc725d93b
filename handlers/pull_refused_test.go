package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// "A 4xx means nothing was written". A pull
// naming an unanswered push_id that is then refused (400 for a malformed
// backfill, 409 repair_needed for a version ahead of the server's) had
// already marked the push id abandoned (and dropped its staged chunks):
// sync_pushes grew, and the node, which got only the error and not the
// header's "push": {"version_id": null}, finds its push refused for good
// when it resends it (409 push_abandoned).
func TestPullRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			for i, c := range []struct {
				name, extra string
				status      int
				code        string
			}{
				{"malformed backfill", `,"latest_version_id":%d,"backfill":"junk"`, http.StatusBadRequest, protocol.CodeBadRequest},
				{"backfill of an unknown table", `,"latest_version_id":%d,"backfill":"1;nope:i:id=int"`, http.StatusBadRequest, protocol.CodeBadRequest},
				{"version ahead of the server", `,"latest_version_id":%d9`, http.StatusConflict, protocol.CodeRepairNeeded},
				// Not a version: refused as malformed, not answered
				// reset_required (the node would reset for it).
				{"negative version", `,"latest_version_id":-%d`, http.StatusBadRequest, protocol.CodeBadRequest},
			} {
				// The node's push, whose answer it lost.
				var push protocol.PushRequest
				if err := json.Unmarshal(e.pushBody(int64(10+i), fmt.Sprint("p", i)), &push); err != nil {
					t.Fatal(err)
				}
				pushBody, _ := json.Marshal(&push)
				before := e.state()
				pull := fmt.Sprintf(`{"push_id":%q`+c.extra+`}`, push.PushID, e.latest())
				status, raw, d := e.do(e.request(http.MethodPost, "pull", "", []byte(pull)))
				if status != c.status || d.Code != c.code {
					t.Fatalf("%s: pull %s: %d %s, want %d %s", c.name, pull, status, raw, c.status, c.code)
				}
				e.unchanged(before, c.name)
				if status, raw, _ := e.push(pushBody); status != http.StatusOK {
					t.Fatalf("%s: the push resent after the refused pull: %d %s, want 200", c.name, status, raw)
				}
			}
		})
	}
}

// TestPullRefusedNotesNoHeldVersion: a pull refused for a malformed
// push_id records nothing of the node either, not even the version it
// claims to hold (sync_node_activity.held_version, which holds the log's
// trim back): it was refused after that was written.
func TestPullRefusedNotesNoHeldVersion(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			held := func() *int64 {
				var v []*int64
				if err := e.s.DB.NewRaw("SELECT held_version FROM sync_node_activity WHERE node_id = ?", e.node.NodeID).Scan(ctx, &v); err != nil {
					t.Fatal(err)
				}
				if len(v) == 0 {
					return nil
				}
				return v[0]
			}
			for _, id := range []string{"x", "6D4F0A61-3C56-4AB4-9C39-5A0F1E1C1B3E"} {
				pull := fmt.Sprintf(`{"latest_version_id":0,"push_id":%q}`, id)
				status, raw, d := e.do(e.request(http.MethodPost, "pull", "", []byte(pull)))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("pull %s: %d %s, want 400 bad_request", pull, status, raw)
				}
				if h := held(); h != nil {
					t.Fatalf("pull %s, refused, recorded held version %d", pull, *h)
				}
			}
		})
	}
}
