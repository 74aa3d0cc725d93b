package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestForeignPushID: a push id that another node's push applied, or that
// another node's pull gave up, is refused with 400 bad_request in a
// push, a chunk, a commit and a pull, nothing written, as
// docs/protocol.md says. The doc said so of push-status only, and its
// table of a push's checks knew only the node's own ids.
func TestForeignPushID(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	for _, want := range []string{
		"| the push id is another node's: one its push (or commit) applied or its pull gave up | 400 `bad_request` (also in a chunk, a commit, a pull's `push_id` and `push-status`; a pull's `push_id` naming chunks another node staged and has not committed, too) |",
		"a push the node sent but never got an answer for (another node's, applied or given up: `400 bad_request`)",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/protocol.md does not say %q", want)
		}
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			status, raw := e.register(`{"extra_data":{"who":"b"}}`)
			var b protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil {
				t.Fatalf("register b: %d %s", status, raw)
			}
			asB := []opt{withNode(b.Node.NodeID), withSecret(b.Node.Secret)}
			applied := newUUID()
			var req protocol.PushRequest
			if err := json.Unmarshal(e.pushBody(1, "first"), &req); err != nil {
				t.Fatal(err)
			}
			req.PushID = applied
			first, _ := json.Marshal(&req)
			if status, raw, _ := e.push(first); status != http.StatusOK {
				t.Fatalf("the node's push: %d %s", status, raw)
			}
			abandoned := newUUID()
			if status, raw, _ := e.do(e.request(http.MethodPost, "pull", "", fmt.Appendf(nil, `{"latest_version_id":%d,"push_id":%q}`, e.latest(), abandoned))); status != http.StatusOK {
				t.Fatalf("the node's pull giving a push up: %d %s", status, raw)
			}
			for _, id := range []string{applied, abandoned} {
				for _, c := range []struct{ endpoint, body string }{
					{"push", string(e.rawPush(`{"order":1,"table":"lists","row_id":"2","command":"i"}`, `"lists":[{"id":2,"name":"second"}]`))},
					{"push-chunk", `{"push_id":"$ID","seq":0,"operations":[{"order":1,"table":"lists","row_id":"2","command":"i"}],"payload":{"lists":[{"id":2,"name":"second"}]}}`},
					{"push-commit", `{"push_id":"$ID","chunks":1,"digest":"` + strings.Repeat("0", 64) + `"}`},
					{"pull", `{"latest_version_id":0,"push_id":"$ID"}`},
				} {
					body := c.body
					if c.endpoint == "push" {
						var r protocol.PushRequest
						if err := json.Unmarshal([]byte(body), &r); err != nil {
							t.Fatal(err)
						}
						r.PushID = id
						b, _ := json.Marshal(&r)
						body = string(b)
					}
					body = strings.ReplaceAll(body, "$ID", id)
					before := e.state()
					status, raw, d := e.do(e.request(http.MethodPost, c.endpoint, "", []byte(body), asB...))
					if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "another node") {
						t.Fatalf("%s naming the other node's push id %s: %d %s, want 400 bad_request", c.endpoint, id, status, raw)
					}
					e.unchanged(before, c.endpoint)
				}
			}
		})
	}
}

// TestForeignStagedPushID: a pull of another node naming a push id whose
// chunks a node has staged but not committed is refused with 400
// bad_request, nothing marked: it used to mark the id given up as the
// other node's, so that the owner's commit, status and settling pull were
// then refused as naming another node's id, the push stuck.
func TestForeignStagedPushID(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			status, raw := e.register(`{"extra_data":{"who":"b"}}`)
			var b protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &b) != nil {
				t.Fatalf("register b: %d %s", status, raw)
			}
			asB := []opt{withNode(b.Node.NodeID), withSecret(b.Node.Secret)}
			id := newUUID()
			chunk := []byte(fmt.Sprintf(`{"push_id":%q,"seq":0,"operations":[{"order":1,"table":"lists","row_id":"2","command":"i"}],"payload":{"lists":[{"id":2,"name":"second"}]}}`, id))
			if status, raw, _ := e.do(e.request(http.MethodPost, "push-chunk", "", chunk)); status != http.StatusOK {
				t.Fatalf("the node's chunk: %d %s", status, raw)
			}
			before := e.state()
			for _, c := range []struct{ method, endpoint, query, body string }{
				{http.MethodPost, "pull", "", fmt.Sprintf(`{"latest_version_id":0,"push_id":%q}`, id)},
			} {
				var body []byte
				if c.body != "" {
					body = []byte(c.body)
				}
				status, raw, d := e.do(e.request(c.method, c.endpoint, c.query, body, asB...))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "another node") {
					t.Fatalf("%s of another node naming the staged push id: %d %s, want 400 bad_request", c.endpoint, status, raw)
				}
				e.unchanged(before, c.endpoint)
			}
			commit := fmt.Sprintf(`{"push_id":%q,"latest_version_id":null,"chunks":1,"digest":%q}`, id, protocol.CommitDigest([]string{protocol.ChunkDigest(chunk)}))
			if status, raw, _ := e.do(e.request(http.MethodPost, "push-commit", "", []byte(commit))); status != http.StatusOK || !strings.Contains(string(raw), `"new_version_id":1`) {
				t.Fatalf("the owner's commit after the other node's requests: %d %s", status, raw)
			}
		})
	}
}
