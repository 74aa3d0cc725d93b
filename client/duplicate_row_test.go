package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestDuplicateRowAnswer: a repair or reset answer holding the same row
// (same table and key) twice, in one rows line or in two, and a pull
// answer inserting the same row twice, are refused with
// dbsync.ErrBadResponse naming the table and the key, and the node is
// left as it was. Before, a repair failed with the database's own
// unique-constraint error, and a reset or a pull applied one of the two
// copies. Nodes on both databases.
func TestDuplicateRowAnswer(t *testing.T) {
	t.Parallel()
	const (
		head = `{"type":"header","latest_version_id":1,"tables":["lists","todos","notes"]}`
		v1   = `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`
		a    = `{"id":50,"name":"a"}`
		b    = `{"id":50,"name":"b"}`
		note = `{"id":"6f1c2a4e-0000-4000-8000-000000000001","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":1.5,"tag":null,"count":3,"meta":{"a":1}}`
		ins  = `{"order":%d,"table":"lists","row_id":"50","command":"i","version_id":1}`
	)
	rows := func(table string, r ...string) string {
		return `{"type":"rows","table":"` + table + `","rows":[` + strings.Join(r, ",") + `]}`
	}
	for _, tc := range []struct {
		name   string
		op     string // pull, repair or reset
		key    string // the duplicate's, as the error names it
		answer []string
	}{
		{"one line", "repair", "50",
			[]string{head, rows("lists", a, b), `{"type":"end","row_count":2}`}},
		{"two lines", "repair", "50",
			[]string{head, rows("lists", a), rows("lists", b), `{"type":"end","row_count":2}`}},
		{"uuid key", "repair", "6f1c2a4e-0000-4000-8000-000000000001",
			[]string{head, rows("notes", note), rows("notes", note), `{"type":"end","row_count":2}`}},
		{"one line", "reset", "50",
			[]string{head, rows("lists", a, b), `{"type":"end","row_count":2}`}},
		{"two lines", "reset", "50",
			[]string{head, rows("lists", a), rows("lists", b), `{"type":"end","row_count":2}`}},
		{"two inserts", "pull", "50",
			[]string{`{"type":"header","latest_version_id":1}`, v1,
				`{"type":"chunk","operations":[` + fmt.Sprintf(ins, 1) + `,` + fmt.Sprintf(ins, 2) +
					`],"payload":{"lists":[` + a + `]}}`,
				`{"type":"end","operation_count":2,"row_count":1}`}},
		{"payload row twice", "pull", "50",
			[]string{`{"type":"header","latest_version_id":1}`, v1,
				`{"type":"chunk","operations":[` + fmt.Sprintf(ins, 1) + `],"payload":{"lists":[` + a + `,` + b + `]}}`,
				`{"type":"end","operation_count":1,"row_count":2}`}},
	} {
		for _, kind := range dbtest.Kinds {
			t.Run(tc.op+"/"+tc.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				db := synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
				cl := synctest.NewClientWith(t, nil, "n", db, testmodels.CreateSchema, synctest.Models(),
					&client.Config{URL: f.ts.URL + "/sync"})
				l := insertList(t, db, "mine")
				insertTodos(t, db, l, "mine", 2)
				before := state(t, cl)
				answer := strings.Join(tc.answer, "\n") + "\n"
				ep := tc.op
				if ep == "reset" {
					ep = "repair" // a reset reads a repair's answer
				}
				f.on(ep, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/x-ndjson")
					w.Write([]byte(answer))
				})
				var err error
				switch tc.op {
				case "pull":
					_, err = cl.Pull(ctx)
				case "repair":
					_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
				case "reset":
					_, err = cl.Reset(ctx)
				}
				if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), tc.key) ||
					!strings.Contains(err.Error(), "twice") {
					t.Fatalf("%s of an answer holding a row twice: %v, want dbsync.ErrBadResponse naming the row twice", tc.op, err)
				}
				if after := state(t, cl); after != before {
					t.Fatalf("the refused %s changed the node:\n%s\nwas:\n%s", tc.op, after, before)
				}
			})
		}
	}
}
