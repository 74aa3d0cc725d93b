package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestChunkedPushRoutes: the chunk endpoints are signed for their own
// name, bounded by MaxChunkBytes (commit and status by MaxBodyBytes), and
// a refused request stages and writes nothing.
func TestChunkedPushRoutes(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{handlers: &handlers.Config{MaxChunkBytes: 400, MaxBodyBytes: 200}})
			before := e.state()
			id := newUUID()
			chunk := func(seq int, name string) []byte {
				return []byte(fmt.Sprintf(`{"push_id":%q,"seq":%d,"operations":[{"order":%d,"table":"lists","row_id":"%d","command":"i"}],"payload":{"lists":[{"id":%d,"name":%q}]}}`,
					id, seq, seq+1, seq+1, seq+1, name))
			}
			staged := func() int {
				n, err := e.s.DB.NewSelect().Table("sync_push_chunks").Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return int(n)
			}
			big := chunk(0, strings.Repeat("x", 400))
			if status, raw, d := e.do(e.request(http.MethodPost, "push-chunk", "", big)); status != http.StatusRequestEntityTooLarge || d.Code != protocol.CodeTooLarge {
				t.Fatalf("chunk of %d bytes: %d %s", len(big), status, raw)
			}
			// Signed for another endpoint, or with a query: refused.
			for name, opts := range map[string][]opt{
				"signed for push":   {withEndpoint("push")},
				"signed with query": {withSignedQuery("seq=0")},
				"unsigned":          {unsigned()},
			} {
				if status, raw, d := e.do(e.request(http.MethodPost, "push-chunk", "", chunk(0, "a"), opts...)); status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
					t.Fatalf("%s: %d %s", name, status, raw)
				}
			}
			if n := staged(); n != 0 {
				t.Fatalf("%d chunks staged by refused requests", n)
			}
			e.unchanged(before, "refused chunks")
			// Two chunks, status, commit.
			var digests []string
			for seq, name := range []string{"a", "b"} {
				body := chunk(seq, name)
				if status, raw, _ := e.do(e.request(http.MethodPost, "push-chunk", "", body)); status != http.StatusOK {
					t.Fatalf("chunk %d: %d %s", seq, status, raw)
				}
				digests = append(digests, protocol.ChunkDigest(body))
			}
			for _, q := range []string{"", "push_id=" + id + "&seq=1", "push_id=x"} {
				if status, raw, d := e.do(e.request(http.MethodGet, "push-status", q, nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Fatalf("status with %q: %d %s", q, status, raw)
				}
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "push-status", url.Values{"push_id": {id}}.Encode(), nil)); status != http.StatusOK ||
				!strings.Contains(string(raw), digests[1]) {
				t.Fatalf("status: %d %s", status, raw)
			}
			commit := fmt.Sprintf(`{"push_id":%q,"latest_version_id":null,"chunks":2,"digest":%q}`, id, protocol.CommitDigest(digests))
			if status, raw, d := e.do(e.request(http.MethodPost, "push-commit", "", []byte(commit+strings.Repeat(" ", 200)))); status != http.StatusRequestEntityTooLarge || d.Code != protocol.CodeTooLarge {
				t.Fatalf("commit over MaxBodyBytes: %d %s", status, raw)
			}
			if status, raw, d := e.do(e.request(http.MethodPost, "push-commit", "", []byte(commit+"{}"))); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
				t.Fatalf("commit with trailing data: %d %s", status, raw)
			}
			bad := strings.Replace(commit, `"chunks":2`, `"chunks":3`, 1)
			if status, raw, d := e.do(e.request(http.MethodPost, "push-commit", "", []byte(bad))); status != http.StatusConflict || d.Code != protocol.CodePushIncomplete {
				t.Fatalf("commit of 3 chunks: %d %s", status, raw)
			}
			e.unchanged(before, "incomplete commit")
			if status, raw, _ := e.do(e.request(http.MethodPost, "push-commit", "", []byte(commit))); status != http.StatusOK || !strings.Contains(string(raw), `"new_version_id":1`) {
				t.Fatalf("commit: %d %s", status, raw)
			}
			if n := staged(); n != 0 {
				t.Fatalf("%d chunks staged after the commit", n)
			}
			for _, c := range []struct{ method, path string }{
				{http.MethodGet, "/push-chunk"}, {http.MethodGet, "/push-commit"}, {http.MethodPost, "/push-status"},
			} {
				if status, raw, _ := e.do(e.request(c.method, strings.TrimPrefix(c.path, "/"), "", nil)); status != http.StatusMethodNotAllowed {
					t.Fatalf("%s %s: %d %s", c.method, c.path, status, raw)
				}
			}
		})
	}
}
