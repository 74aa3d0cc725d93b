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
)

// FuzzPullAnswer gives a real client on a SQLite file, with pending local
// changes, any answer to its pull or repair (op even: pull, odd: repair),
// over HTTP: the client must not panic or hang, and an answer it refuses
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
	f.Add(uint8(1), repair)
	f.Add(uint8(1), strings.Replace(repair, `"row_count":3`, `"row_count":4`, 1))
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
		if op%2 == 0 {
			_, err = cl.Pull(ctx)
		} else {
			_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
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
