package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// requestLine reports whether a client can put raw in a request line.
func requestLine(raw string) bool {
	return !strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '#' })
}

// FuzzPushStatusParams fuzzes the query of a correctly signed GET
// /push-status. The server must never answer 5xx (nor panic), must answer
// errors as JSON without the database's text, a 200 must name the push
// asked about, and no answer may write. $STAGED and $APPLIED stand for
// the id of a push with a chunk staged and of a push applied.
func FuzzPushStatusParams(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	applied, staged := uuid.NewString(), uuid.NewString()
	if status, raw, _ := e.push(e.rawPush(`{"order":1,"table":"lists","row_id":"1","command":"i"}`, `"lists":[{"id":1,"name":"home"}]`)); status != http.StatusOK {
		f.Fatalf("push: %d %s", status, raw)
	}
	for _, c := range []struct{ id, ops string }{{applied, `[{"order":1,"table":"lists","row_id":"2","command":"i"}],"payload":{"lists":[{"id":2,"name":"work"}]}`}, {staged, `[{"order":1,"table":"lists","row_id":"1","command":"d"}]`}} {
		body := fmt.Sprintf(`{"push_id":%q,"seq":0,"operations":%s}`, c.id, c.ops)
		if status, raw, _ := e.do(e.request(http.MethodPost, "push-chunk", "", []byte(body))); status != http.StatusOK {
			f.Fatalf("chunk: %d %s", status, raw)
		}
		if c.id == applied {
			commit := fmt.Sprintf(`{"push_id":%q,"latest_version_id":%d,"chunks":1,"digest":%q}`, c.id, e.latest(), protocol.CommitDigest([]string{protocol.ChunkDigest([]byte(body))}))
			if status, raw, _ := e.do(e.request(http.MethodPost, "push-commit", "", []byte(commit))); status != http.StatusOK {
				f.Fatalf("commit: %d %s", status, raw)
			}
		}
	}
	for _, s := range []string{
		"push_id=$STAGED", "push_id=$APPLIED", "push_id=" + uuid.NewString(), "push_id=" + strings.ToUpper(staged), "push_id=x", "push_id=",
		"", "push_id=$STAGED&push_id=$STAGED", "push_id=$STAGED&seq=0", "push_id=%zz", "push_id=$STAGED;x=1", "push_id=%00",
		"push_id=$STAGED%20", "push_id=$STAGED&%zz", "push_id=%7B$STAGED%7D", "push_id='%20OR%201=1", "Push_id=$STAGED", "a=1&a=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		raw = strings.NewReplacer("$STAGED", staged, "$APPLIED", applied).Replace(raw)
		if !requestLine(raw) {
			return
		}
		e := e.with(t)
		before, held := e.state(), e.staged()
		status, body, d := e.do(e.request(http.MethodGet, "push-status", raw, nil))
		switch {
		case status == http.StatusOK:
			var resp protocol.PushChunkStatus
			if err := json.Unmarshal(body, &resp); err != nil || resp.Chunks == nil || !strings.Contains(raw, resp.PushID) ||
				(resp.PushID == applied) != (resp.VersionID != nil) || (resp.PushID == staged) != (len(resp.Chunks) == 1) {
				t.Fatalf("push-status %q: 200 %s (%v)", raw, body, err)
			}
		case status >= 400 && status < 500:
			dbtest.NoDatabaseText(t, "refused push-status", d.Message)
		default:
			t.Fatalf("push-status %q: %d %s", raw, status, body)
		}
		e.unchanged(before, "push-status")
		if after := e.staged(); !slices.Equal(held, after) {
			t.Fatalf("push-status %q changed the chunks staged: %q → %q", raw, held, after)
		}
	})
}

// FuzzRepairParams fuzzes the query of a correctly signed GET /repair,
// which takes none. The server must never answer 5xx (nor panic), must
// answer errors as JSON without the database's text, a 200 must be a
// well-formed stream, and no answer may write (a repair records the
// node's held version in sync_node_activity, which env.state leaves
// out).
func FuzzRepairParams(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	const note = `"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"`
	e.mustPush(`{"order":1,"table":"lists","row_id":"1","command":"i"},{"order":2,"table":"todos","row_id":"1","command":"i"},{"order":3,"table":"notes","row_id":`+note+`,"command":"i"}`,
		`"lists":[{"id":1,"name":"home"}],"todos":[{"id":1,"list_id":1,"title":"mail","done":false}],"notes":[{"id":`+note+`,"body":"b","created":"2024-01-01T00:00:00Z","data":"AAEC","score":1.5,"tag":"t","count":3,"meta":{"a":1}}]`)
	for _, s := range []string{"", "table=lists", "after=1", "=", "&", "%zz", "a=1&a=2", "x", ";"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !requestLine(raw) {
			return
		}
		e := e.with(t)
		before := e.state()
		status, body, d := e.do(e.request(http.MethodGet, "repair", raw, nil))
		switch {
		case status == http.StatusOK:
			e.stream("repair "+raw, body)
		case status >= 400 && status < 500:
			dbtest.NoDatabaseText(t, "refused repair", d.Message)
		default:
			t.Fatalf("repair %q: %d %s", raw, status, body)
		}
		e.unchanged(before, "repair")
	})
}
