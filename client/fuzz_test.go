package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// FuzzPullAnswer gives a real client on a SQLite file, with pending local
// changes, any answer to its pull, repair or reset (op%3: 0, 1, 2; a
// reset reads a repair's answer), over HTTP: the client must not panic or hang, and an answer it refuses
// leaves its database as it was (an answer applies whole or not at all).
func FuzzPullAnswer(f *testing.F) {
	const (
		v1     = `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`
		list   = `{"id":50,"name":"server"}`
		todo   = `{"id":60,"list_id":50,"title":"t","done":false}`
		note   = `{"id":"6f1c2a4e-0000-4000-8000-000000000001","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":1.5,"tag":null,"count":3,"meta":{"a":1}}`
		chunk  = `{"type":"chunk","operations":[{"order":1,"table":"lists","row_id":"50","command":"i","version_id":1},{"order":2,"table":"todos","row_id":"60","command":"i","version_id":1},{"order":3,"table":"notes","row_id":"6f1c2a4e-0000-4000-8000-000000000001","command":"i","version_id":1}],"payload":{"lists":[` + list + `],"todos":[` + todo + `],"notes":[` + note + `]}}`
		repair = `{"type":"header","latest_version_id":1,"tables":["lists","todos","notes"]}` + "\n" +
			`{"type":"rows","table":"lists","rows":[` + list + `]}` + "\n" +
			`{"type":"rows","table":"todos","rows":[` + todo + `]}` + "\n" +
			`{"type":"rows","table":"notes","rows":[` + note + `]}` + "\n" + `{"type":"end","row_count":3}` + "\n"
	)
	lines := func(l ...string) string { return strings.Join(l, "\n") + "\n" }
	for _, s := range []string{
		lines(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`),
		lines(`{"type":"header","latest_version_id":1,"max_keys":{"lists":50,"todos":60}}`, v1, chunk, `{"type":"end","operation_count":3,"row_count":3}`),
		lines(`{"type":"header","latest_version_id":1}`, v1, chunk, `{"type":"end","operation_count":3,"row_count":2}`),
		lines(`{"type":"header","latest_version_id":1}`, v1, chunk, chunk, `{"type":"end","operation_count":6,"row_count":6}`),
		lines(`{"type":"header","latest_version_id":1}`, `{"type":"header","latest_version_id":1}`, v1, `{"type":"end"}`),
		lines(`{"type":"header","latest_version_id":1}`, v1, chunk, `{"type":"error","error":{"code":"internal","message":"x"}}`),
		lines(`{"type":"header","latest_version_id":1}`, v1, chunk),
	} {
		f.Add(uint8(0), s)
	}
	for _, op := range []uint8{1, 2} {
		f.Add(op, repair)
		f.Add(op, strings.Replace(repair, `"row_count":3`, `"row_count":4`, 1))
	}
	f.Fuzz(func(t *testing.T, op uint8, answer string) {
		fs := newFake(t)
		cl, db := newHostileClient(t, fs, nil)
		l := insertList(t, db, "mine")
		insertTodos(t, db, l, "mine", 2)
		body := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write([]byte(answer))
		}
		fs.on("pull", body)
		fs.on("repair", body)
		node := &synctest.Client{DB: db, Reg: cl.Registry()}
		before := state(t, node)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var err error
		switch op % 3 {
		case 0:
			_, err = cl.Pull(ctx)
		case 1:
			_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
		case 2:
			_, err = cl.Reset(ctx)
		}
		if ctx.Err() != nil {
			t.Fatalf("the client hung on the answer: %v", err)
		}
		if err != nil {
			if after := state(t, node); after != before {
				t.Fatalf("refused answer (%v) changed the node:\n%s\nwas:\n%s", err, after, before)
			}
			var se *dbsync.ServerError
			if !errors.Is(err, dbsync.ErrBadResponse) && !errors.Is(err, dbsync.ErrNetwork) && !errors.As(err, &se) {
				t.Logf("refused with %v", err)
			}
		}
		insertList(t, db, "later") // the node still writes
	})
}

// FuzzJSONAnswer gives a real client any answer (status and body) to its
// push (op 0), its chunked push's requests (op 1), its registration (op
// 2) or its query (op 3): the client must not panic, its error must be
// one a caller can tell apart, and a push that fails keeps the node's
// pending operations.
func FuzzJSONAnswer(f *testing.F) {
	for _, s := range []struct {
		op     uint8
		status int
		body   string
	}{
		{0, 200, `{"new_version_id":1}`},
		{0, 200, `{"new_version_id":1,"duplicate":true}`},
		{0, 409, `{"error":{"code":"pull_needed","message":"x"}}`},
		{0, 409, `{"error":{"code":"unique_conflict","message":"x","entries":[{"table":"lists","columns":["name"],"values":["a"]}]}}`},
		{1, 200, `{"push_id":"x","seq":0,"digest":"d"}`},
		{1, 200, `{"push_id":"x","version_id":1,"chunks":[]}`},
		{2, 200, `{"node":{"node_id":8,"registered":"2024-01-01T00:00:00Z","secret":"s"}}`},
		{2, 403, `{"error":{"code":"forbidden","message":"no"}}`},
		{3, 200, `{"rows":[{"id":1,"name":"a"}],"next":"1"}`},
		{3, 200, `{"rows":[{"id":"1","name":1}]}`},
		{3, 500, `not json`},
	} {
		f.Add(s.op, s.status, s.body)
	}
	f.Fuzz(func(t *testing.T, op uint8, status int, body string) {
		if status < 200 || status > 599 || status/100 == 1 || status/100 == 3 {
			return // 1xx and 3xx: not a final answer
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fs := newFake(t)
		var cfg *client.Config // op 0: a push of one request
		if op%4 != 0 {
			cfg = &client.Config{PushChunkOperations: 1} // chunks of one
		}
		cl, db := newHostileClient(t, fs, cfg)
		insertList(t, db, "mine")
		insertList(t, db, "mine too")
		answer := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(body))
		}
		pending := count(t, db, "sync_operations", "version_id IS NULL")
		node := &synctest.Client{DB: db, Reg: cl.Registry()}
		before := state(t, node)
		var err error
		switch op % 4 {
		case 0, 1:
			for _, ep := range []string{"push", "push-chunk", "push-commit", "push-status"} {
				fs.on(ep, answer)
			}
			_, err = cl.Push(ctx)
			if err == nil {
				break
			}
			if n := count(t, db, "sync_operations", "version_id IS NULL"); n != pending {
				t.Fatalf("failed push (%v) left %d operations pending, want %d", err, n, pending)
			}
			// A second try, resuming (push-status): the same.
			_, err = cl.Push(ctx)
			if n := count(t, db, "sync_operations", "version_id IS NULL"); err != nil && n != pending {
				t.Fatalf("failed resumed push (%v) left %d operations pending, want %d", err, n, pending)
			}
		case 2:
			fs.on("register", answer)
			if _, err = cl.Register(ctx, nil); err != nil {
				if after := state(t, node); after != before {
					t.Fatalf("refused registration (%v) changed the node:\n%s\nwas:\n%s", err, after, before)
				}
			}
		case 3:
			fs.on("query", answer)
			_, err = client.QueryAll[testmodels.List](ctx, cl, nil)
		}
		if ctx.Err() != nil {
			t.Fatalf("the client hung on the answer: %v", err)
		}
		if err != nil && !distinct(err) {
			t.Fatalf("unclear error: %v (%T)", err, err)
		}
	})
}

// distinct reports whether err is one a caller can tell apart: a bad or
// no answer, or the server's refusal.
func distinct(err error) bool {
	var se *dbsync.ServerError
	var uc *dbsync.UniqueConstraintError
	var sc *dbsync.ScopeError
	var sm *dbsync.SchemaError
	return errors.Is(err, dbsync.ErrBadResponse) || errors.Is(err, dbsync.ErrNetwork) ||
		errors.As(err, &se) || errors.As(err, &uc) || errors.As(err, &sc) || errors.As(err, &sm)
}
