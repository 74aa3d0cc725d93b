package handlers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// staged returns what the server stages of chunked pushes: each chunk
// (node, push id, seq, digest) and the number of keys staged with them.
func (e *env) staged() []string {
	e.t.Helper()
	var chunks []struct {
		NodeID int64
		PushID string
		Seq    int
		Digest string
	}
	if err := e.s.DB.NewSelect().Table("sync_push_chunks").Column("node_id", "push_id", "seq", "digest").Scan(ctx, &chunks); err != nil {
		e.t.Fatal(err)
	}
	keys, err := e.s.DB.NewSelect().Table("sync_push_keys").Count(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []string{fmt.Sprint("keys ", keys)}
	for _, c := range chunks {
		out = append(out, fmt.Sprint(c.NodeID, " ", c.PushID, " ", c.Seq, " ", c.Digest))
	}
	slices.Sort(out)
	return out
}

// FuzzPushChunk fuzzes a chunked push through the handlers: the body of
// a correctly signed POST /push-chunk, then, when the second input is not
// empty, that of POST /push-commit. The server must never answer 5xx (nor
// panic), must answer errors as JSON without the database's text; a
// refused chunk must stage and write nothing, a refused commit must write
// nothing and keep the chunks staged unless it is refused for good (which
// drops them), an accepted one must apply the chunk. $PUSH stands for a fresh
// push id (the same in both), "$LATEST" (with its quotes) for the
// server's latest version and "$DIGEST" for the commit digest of the
// chunk sent.
func FuzzPushChunk(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	const note = `"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"`
	commit := `{"push_id":"$PUSH","latest_version_id":"$LATEST","chunks":1,"digest":"$DIGEST"}`
	for _, s := range [][2]string{
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"1","command":"i"}],"payload":{"lists":[{"id":1,"name":"home"}]}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"2","command":"i"},{"order":2,"table":"todos","row_id":"1","command":"i"}],"payload":{"lists":[{"id":2,"name":"work"}],"todos":[{"id":1,"list_id":2,"title":"mail","done":true}]}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"2","command":"d"}]}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"notes","row_id":` + note + `,"command":"i"}],"payload":{"notes":[{"id":` + note + `,"body":"b","created":"2024-01-01T00:00:00Z","data":"AAEC","score":1.5,"tag":"t","count":3,"meta":{"a":[1,2]}}]}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"todos","row_id":"5","command":"i"}],"payload":{"todos":[{"id":5,"list_id":99,"title":"orphan","done":false}]}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"3","command":"i"}],"payload":{"lists":[{"id":3,"name":"x"}]}}`, ``},
		{`{"push_id":"$PUSH","seq":1,"operations":[{"order":1,"table":"lists","row_id":"3","command":"i"}],"payload":{"lists":[{"id":3,"name":"x"}]}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"$PUSH","latest_version_id":"$LATEST","chunks":2,"digest":"$DIGEST"}`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"$PUSH","latest_version_id":"$LATEST","chunks":1,"digest":"00"}`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"$PUSH","latest_version_id":9999,"chunks":1,"digest":"$DIGEST"}`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"$PUSH","latest_version_id":-1,"chunks":1,"digest":"$DIGEST"}`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"x","chunks":0,"digest":""}`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, commit + ` trailing`},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"4","command":"i"}],"payload":{"lists":[{"id":4,"name":"y"}]}}`, `{"push_id":"$PUSH","chunks":99999999999999999999}`},
		{`{"push_id":"$PUSH","seq":-1,"operations":[{"order":1,"table":"lists","row_id":"5","command":"i"}],"payload":{"lists":[{"id":5,"name":"z"}]}}`, commit},
		{`{"push_id":"$PUSH","seq":100000,"operations":[]}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[]}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"6","command":"i"}],"payload":{}}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"sync_nodes","row_id":"1","command":"d"}]}`, commit},
		{`{"push_id":"X","seq":0,"operations":[]}`, commit},
		{`{"push_id":"$PUSH","seq":0,"operations":[{"order":1,"table":"lists","row_id":"7","command":"i"},{"order":2,"table":"lists","row_id":"07","command":"d"}],"payload":{"lists":[{"id":7,"name":"q"}]}}`, commit},
		{`null`, commit}, {`[]`, commit}, {`{`, commit}, {` `, commit}, {"\xff\xfe", commit},
		{`{"push_id":"$PUSH","seq":0}`, `null`}, {`{"push_id":"$PUSH","seq":0}`, `[]`}, {`{"push_id":"$PUSH","seq":0}`, `{`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, chunk, commit []byte) {
		e := e.with(t)
		id, latest := []byte(uuid.NewString()), []byte(strconv.FormatInt(e.latest(), 10))
		chunk = bytes.ReplaceAll(bytes.ReplaceAll(chunk, []byte(`$PUSH`), id), []byte(`"$LATEST"`), latest)
		commit = bytes.ReplaceAll(bytes.ReplaceAll(commit, []byte(`$PUSH`), id), []byte(`"$LATEST"`), latest)
		commit = bytes.ReplaceAll(commit, []byte(`$DIGEST`), []byte(protocol.CommitDigest([]string{protocol.ChunkDigest(chunk)})))
		before, staged := e.state(), e.staged()
		status, raw, d := e.do(e.request(http.MethodPost, "push-chunk", "", chunk))
		switch {
		case status == http.StatusOK:
			var resp protocol.PushChunkResponse
			if err := json.Unmarshal(raw, &resp); err != nil || resp.Digest != protocol.ChunkDigest(chunk) {
				t.Fatalf("chunk %q: 200 %q (%v)", chunk, raw, err)
			}
		case status >= 400 && status < 500:
			e.unchanged(before, "refused chunk")
			if after := e.staged(); !slices.Equal(staged, after) {
				t.Fatalf("refused chunk %q staged: %q → %q", chunk, staged, after)
			}
			dbtest.NoDatabaseText(t, "refused chunk", d.Message)
		default:
			t.Fatalf("chunk %q: %d %s", chunk, status, raw)
		}
		if len(commit) == 0 {
			return
		}
		before, staged = e.state(), e.staged()
		status, raw, d = e.do(e.request(http.MethodPost, "push-commit", "", commit))
		switch {
		case status == http.StatusOK:
			var resp protocol.PushResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				t.Fatalf("commit %q: 200 %q (%v)", commit, raw, err)
			}
			c, err := protocol.DecodePushChunk(chunk)
			if err != nil {
				t.Fatalf("commit %q applied chunk %q, which does not decode: %v", commit, chunk, err)
			}
			if !resp.Duplicate && !resp.Empty {
				e.appliedOps(t, string(chunk), c.Operations)
			}
		case status >= 400 && status < 500:
			e.unchanged(before, "refused commit")
			// A push refused for good drops its chunks; its keys go
			// with them.
			var c protocol.PushCommit
			if forGood := errors.Is(dbsync.ErrorForCode(d.Code), dbsync.ErrPushRejected) || d.Code == protocol.CodeForeignKey ||
				d.Code == protocol.CodeUniqueConflict; forGood && json.Unmarshal(commit, &c) == nil {
				staged = slices.DeleteFunc(staged, func(s string) bool {
					return strings.HasPrefix(s, "keys ") || strings.HasPrefix(s, fmt.Sprint(e.node.NodeID, " ", c.PushID, " "))
				})
				after := slices.DeleteFunc(e.staged(), func(s string) bool { return strings.HasPrefix(s, "keys ") })
				if !slices.Equal(staged, after) {
					t.Fatalf("commit %q refused for good (%s) left chunks staged: %q", commit, d.Code, after)
				}
			} else if after := e.staged(); !slices.Equal(staged, after) {
				t.Fatalf("refused commit %q (%s) changed the chunks staged: %q → %q", commit, d.Code, staged, after)
			}
			dbtest.NoDatabaseText(t, "refused commit", d.Message)
		default:
			t.Fatalf("commit %q: %d %s", commit, status, raw)
		}
	})
}
