package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// A push (whole, or a chunked push's commit) whose latest_version_id is
// negative names no version a node can hold: it is refused as malformed,
// 400 bad_request, and writes nothing, as a pull's is. It was answered
// 409 pull_needed ("the node gave up on a push based on version 0 or
// older") or, once the log was trimmed, 410 reset_required: a node would
// pull, or reset, over a malformed request.
func TestPushNegativeBase(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, trimmed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/trimmed=%v", kind, trimmed), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, kind, nil)
				for i, name := range []string{"first", "second"} {
					if status, raw, _ := e.push(e.pushBody(int64(i+1), name)); status != http.StatusOK {
						t.Fatalf("push %s: %d %s", name, status, raw)
					}
				}
				if trimmed {
					if res, err := e.s.Srv.Trim(ctx); err != nil || res.Floor == 0 {
						t.Fatalf("trim: %+v %v, want a floor above 0", res, err)
					}
				}
				whole := strings.Replace(string(e.pushBody(10, "x")), fmt.Sprintf(`"latest_version_id":%d`, e.latest()), `"latest_version_id":-1`, 1)
				id := newUUID()
				chunk := []byte(fmt.Sprintf(`{"push_id":%q,"seq":0,"operations":[{"order":1,"table":"lists","row_id":"11","command":"i"}],"payload":{"lists":[{"id":11,"name":"y"}]}}`, id))
				if status, raw, _ := e.do(e.request(http.MethodPost, "push-chunk", "", chunk)); status != http.StatusOK {
					t.Fatalf("chunk: %d %s", status, raw)
				}
				commit := fmt.Sprintf(`{"push_id":%q,"latest_version_id":-1,"chunks":1,"digest":%q}`, id, protocol.CommitDigest([]string{protocol.ChunkDigest(chunk)}))
				for _, c := range []struct{ endpoint, body string }{
					{"push", whole},
					{"push-commit", commit},
				} {
					if !strings.Contains(c.body, `"latest_version_id":-1`) {
						t.Fatalf("%s: %s has no negative base", c.endpoint, c.body)
					}
					before := e.state()
					status, raw, d := e.do(e.request(http.MethodPost, c.endpoint, "", []byte(c.body)))
					if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
						t.Fatalf("%s based on -1: %d %s, want 400 bad_request", c.endpoint, status, raw)
					}
					e.unchanged(before, c.endpoint+" based on -1")
				}
			})
		}
	}
}
