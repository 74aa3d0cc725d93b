package handlers_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestStreamSlotsPerNode: one node has at most Config.MaxStreamsPerNode
// pulls and repairs answered at once (each holds a snapshot, and a
// scoped pull the node's held keys, for as long as it streams); one more
// is answered 503 busy, another node's is answered, and the node's slots
// come back as its answers end. Before, one node's credential could open
// any number, each holding its memory.
func TestStreamSlotsPerNode(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// MaxStreamsPerNode is left at its default, 4.
			const perNode = 4
			e := newEnv(t, kind, &envConfig{handlers: &handlers.Config{Registration: handlers.RateLimit{Every: -1}}})
			// About 24 MB of rows: a repair's answer that the held
			// requests, which read none of it, keep streaming.
			fill := "INSERT INTO lists (id, name) WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 3000) SELECT i, i || substr(hex(zeroblob(4000)), 1, 8000) FROM g"
			if kind == dbtest.KindPostgres {
				fill = "INSERT INTO lists (id, name) SELECT i, i || repeat('0', 8000) FROM generate_series(1, 3000) AS i"
			}
			if _, err := e.s.DB.ExecContext(ctx, fill); err != nil {
				t.Fatal(err)
			}
			status, raw := e.register(`{"extra_data":{"token":"open sesame"}}`)
			if status != http.StatusOK {
				t.Fatalf("register: %d %s", status, raw)
			}
			var other protocol.RegisterResponse
			if err := json.Unmarshal(raw, &other); err != nil {
				t.Fatal(err)
			}
			var held []*http.Response
			defer func() {
				for _, resp := range held {
					resp.Body.Close()
				}
			}()
			for range perNode {
				resp, err := http.DefaultClient.Do(e.request(http.MethodGet, "repair", "", nil))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("repair: %d", resp.StatusCode)
				}
				held = append(held, resp)
			}
			for _, c := range []struct{ method, endpoint string }{{http.MethodGet, "repair"}, {http.MethodPost, "pull"}} {
				var body []byte
				if c.method == http.MethodPost {
					body = []byte(`{"latest_version_id": 0}`)
				}
				status, raw, d := e.do(e.request(c.method, c.endpoint, "", body))
				if status != http.StatusServiceUnavailable || d.Code != protocol.CodeBusy {
					t.Fatalf("%s %d of one node: %d %.200s, want 503 busy", c.endpoint, perNode+1, status, raw)
				}
			}
			o := &env{t: t, s: e.s, url: e.url, node: other.Node}
			if status, raw, _ := o.do(o.request(http.MethodGet, "repair", "", nil)); status != http.StatusOK {
				t.Fatalf("another node's repair while one node holds %d: %d %.200s, want 200", perNode, status, raw)
			}
			// A held answer given up ends its stream: its slot comes back.
			held[0].Body.Close()
			held = held[1:]
			deadline := time.Now().Add(hangGuard)
			for {
				status, raw, _ := e.do(e.request(http.MethodGet, "repair", "", nil))
				if status == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the node's repair after one of its answers ended: %d %.200s", status, raw)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
