package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestDuplicateRowSpellings: an answer holding one row under two
// spellings of its key that the node's database takes for one (a text
// key under a collation ignoring case: SQLite's NOCASE, a
// nondeterministic ICU collation on PostgreSQL) is refused as one
// holding the row twice, as for the same spelling twice, the node left
// as it was: a repair (store.WriteNew finds it already), a pull's chunk,
// a reset's rows line. Before, a pull or a reset on SQLite wrote the two
// copies into one row (the last won), and on PostgreSQL failed with the
// database's own error (SQLSTATE 21000); the two spellings in two lines
// of a reset were written one over the other.
func TestDuplicateRowSpellings(t *testing.T) {
	t.Parallel()
	const (
		head = `{"type":"header","latest_version_id":1,"tables":["case_codes"]}`
		v1   = `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`
		a    = `{"code":"Abc","name":"a"}`
		b    = `{"code":"aBC","name":"b"}`
	)
	rows := func(r ...string) string {
		return `{"type":"rows","table":"case_codes","rows":[` + strings.Join(r, ",") + `]}`
	}
	for _, tc := range []struct {
		name   string
		op     string
		answer []string
	}{
		{"one line", "repair", []string{head, rows(a, b), `{"type":"end","row_count":2}`}},
		{"two lines", "repair", []string{head, rows(a), rows(b), `{"type":"end","row_count":2}`}},
		{"one line", "reset", []string{head, rows(a, b), `{"type":"end","row_count":2}`}},
		{"two lines", "reset", []string{head, rows(a), rows(b), `{"type":"end","row_count":2}`}},
		{"two inserts", "pull", []string{`{"type":"header","latest_version_id":1}`, v1,
			`{"type":"chunk","operations":[{"order":1,"table":"case_codes","row_id":"Abc","command":"i","version_id":1},` +
				`{"order":2,"table":"case_codes","row_id":"aBC","command":"i","version_id":1}],"payload":{"case_codes":[` + a + `,` + b + `]}}`,
			`{"type":"end","operation_count":2,"row_count":2}`}},
	} {
		for _, kind := range dbtest.Kinds {
			t.Run(tc.op+"/"+tc.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				models := []any{(*testmodels.CaseCode)(nil)}
				db := synctest.ClientDB(t, kind, "case_codes", testmodels.CreateCaseCodes, models)
				cl := synctest.NewClientWith(t, nil, "n", db, testmodels.CreateCaseCodes, models, &client.Config{URL: f.ts.URL + "/sync"})
				if _, err := db.ExecContext(ctx, "INSERT INTO case_codes (code, name) VALUES ('mine', 'm')"); err != nil {
					t.Fatal(err)
				}
				read := func() string {
					var c []testmodels.CaseCode
					if err := db.NewSelect().Model(&c).Order("code").Scan(ctx); err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, r := range c {
						got = append(got, r.Code+"="+r.Name)
					}
					return strings.Join(got, ",")
				}
				before := read()
				answer := strings.Join(tc.answer, "\n") + "\n"
				ep := tc.op
				if ep == "reset" {
					ep = "repair"
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
				if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), "twice") {
					t.Fatalf("%s of an answer holding a row under two spellings: %v (rows now %s), want dbsync.ErrBadResponse naming the row twice", tc.op, err, read())
				}
				if after := read(); after != before {
					t.Fatalf("the refused %s changed the node: %s, was %s", tc.op, after, before)
				}
			})
		}
	}
}
