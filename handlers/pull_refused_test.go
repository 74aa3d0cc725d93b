package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
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

// TestPullRefusedNotesNoHeldVersion: a refused pull records nothing of
// the node either, not even the version it claims to hold
// (sync_node_activity.held_version, which holds the log's trim back): a
// pull refused for its push_id (malformed, another node's, one unknown
// id too many) was refused after that was written. (A pull ahead of the
// server: TestPullAheadOfServerMessage.)
func TestPullRefusedNotesNoHeldVersion(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			held := func() string {
				var v []*int64
				if err := e.s.DB.NewRaw("SELECT held_version FROM sync_node_activity WHERE node_id = ?", e.node.NodeID).Scan(ctx, &v); err != nil {
					t.Fatal(err)
				}
				if len(v) == 0 || v[0] == nil {
					return "none"
				}
				return fmt.Sprint(*v[0])
			}
			pull := func(body string, opts ...opt) (int, []byte, protocol.ErrorDetail) {
				return e.do(e.request(http.MethodPost, "pull", "", []byte(body), opts...))
			}
			// Another node, and a push id of its own (marked abandoned
			// by its pull).
			status, raw := e.register(`{"extra_data":{"token":"open sesame"}}`)
			var other protocol.RegisterResponse
			if err := json.Unmarshal(raw, &other); status != http.StatusOK || err != nil {
				t.Fatalf("register: %d %s (%v)", status, raw, err)
			}
			theirs := newUUID()
			if status, raw, _ := pull(fmt.Sprintf(`{"latest_version_id":0,"push_id":%q}`, theirs),
				withNode(other.Node.NodeID), withSecret(other.Node.Secret)); status != http.StatusOK {
				t.Fatalf("the other node's pull: %d %s", status, raw)
			}
			for _, c := range []struct {
				name  string
				setup func()
				pull  string
			}{
				// Refused before the push id is looked at.
				{"malformed backfill", nil, fmt.Sprintf(`{"latest_version_id":0,"push_id":%q,"backfill":"junk"}`, newUUID())},
				{"negative version", nil, fmt.Sprintf(`{"latest_version_id":-1,"push_id":%q}`, newUUID())},
				{"malformed push id", nil, `{"latest_version_id":0,"push_id":"x"}`},
				{"push id not in canonical form", nil, `{"latest_version_id":0,"push_id":"6D4F0A61-3C56-4AB4-9C39-5A0F1E1C1B3E"}`},
				{"another node's push id", nil, fmt.Sprintf(`{"latest_version_id":0,"push_id":%q}`, theirs)},
				// The node holds version 1 (the other node's), then asks
				// from version 0 (a lower version is written at once)
				// about one unknown push id too many.
				{"too many abandoned push ids", func() {
					if status, raw, _ := e.push(e.pushBody(1, "first"), withNode(other.Node.NodeID), withSecret(other.Node.Secret)); status != http.StatusOK {
						t.Fatalf("push: %d %s", status, raw)
					}
					for range server.MaxAbandonedPushes {
						body := fmt.Sprintf(`{"latest_version_id":%d,"push_id":%q}`, e.latest(), newUUID())
						if status, raw, _ := pull(body); status != http.StatusOK {
							t.Fatalf("pull %s: %d %s", body, status, raw)
						}
					}
				}, fmt.Sprintf(`{"latest_version_id":0,"push_id":%q}`, newUUID())},
			} {
				if c.setup != nil {
					c.setup()
				}
				before := held()
				status, raw, d := pull(c.pull)
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("%s: pull %s: %d %s, want 400 bad_request", c.name, c.pull, status, raw)
				}
				if after := held(); after != before {
					t.Fatalf("%s: pull %s, refused, recorded held version %s (was %s)", c.name, c.pull, after, before)
				}
			}
		})
	}
}

// TestPullAheadOfServerMessage: a pull from a version the server does not
// have is answered 409 repair_needed with a message about a repair, not
// "push rejected" (ErrRepairNeeded's text, which wraps ErrPushRejected
// for a push's sake); a push from such a version still says it was
// rejected.
func TestPullAheadOfServerMessage(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			pull := `{"latest_version_id":9}`
			status, raw, d := e.do(e.request(http.MethodPost, "pull", "", []byte(pull)))
			if status != http.StatusConflict || d.Code != protocol.CodeRepairNeeded {
				t.Fatalf("pull %s: %d %s, want 409 repair_needed", pull, status, raw)
			}
			if want := "dbsync: repair needed: the node holds version 9, the server only 0"; d.Message != want {
				t.Fatalf("pull %s: message %q, want %q", pull, d.Message, want)
			}
			var held int
			if err := e.s.DB.NewRaw("SELECT COUNT(*) FROM sync_node_activity WHERE node_id = ? AND held_version IS NOT NULL", e.node.NodeID).Scan(ctx, &held); err != nil || held != 0 {
				t.Fatalf("pull %s, refused, recorded a held version (%d rows, %v)", pull, held, err)
			}
			push := []byte(strings.Replace(string(e.pushBody(1, "first")), `"latest_version_id":0`, `"latest_version_id":9`, 1))
			status, raw, d = e.push(push)
			if status != http.StatusConflict || d.Code != protocol.CodeRepairNeeded {
				t.Fatalf("push %s: %d %s, want 409 repair_needed", push, status, raw)
			}
			if want := "dbsync: push rejected: repair needed: the node holds version 9, the server only 0"; d.Message != want {
				t.Fatalf("push: message %q, want %q", d.Message, want)
			}
		})
	}
}
