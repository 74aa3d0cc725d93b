package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// TestPulledDeleteOtherSpelling: on a node whose text key ignores case
// (SQLite's NOCASE, a nondeterministic ICU collation on PostgreSQL), a
// pulled delete naming the node's row "abc" under another spelling
// ("ABC": a pushed delete as a server of an earlier release logged it;
// servers now log the server's spelling) is the delete of that row: without a
// pending change the row is deleted (M2); with one, it meets it as M5
// says (merge.md K2): by default the row stays, re-created under the
// delete's spelling, the node's values kept; the server's side deletes
// it. Before, the delete found no pending change under its spelling:
// M2 deleted the row (the database found it) and left the node's
// pending update of a row gone (dropped at the next push, C7): the
// node's change lost whatever the policy.
func TestPulledDeleteOtherSpelling(t *testing.T) {
	t.Parallel()
	const (
		v1 = `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`
		v2 = `{"type":"versions","versions":[{"version_id":2,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`
	)
	cases := []struct {
		name    string
		edit    bool // the node updates its row before the delete comes
		policy  merge.Policy
		rows    string
		pending string
	}{
		{name: "no_change", policy: merge.Default, rows: "", pending: ""},
		{name: "edited/default", edit: true, policy: merge.Default, rows: "ABC=mine", pending: "i ABC"},
		{name: "edited/serverwins", edit: true, policy: merge.ServerWins, rows: "", pending: ""},
	}
	for _, c := range cases {
		for _, kind := range dbtest.Kinds {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				mods := []any{(*testmodels.CaseCode)(nil)}
				db := synctest.ClientDB(t, kind, "case_codes", testmodels.CreateCaseCodes, mods)
				cl := synctest.NewClientWith(t, nil, "n", db, testmodels.CreateCaseCodes, mods, &client.Config{URL: f.ts.URL + "/sync", DefaultPolicy: c.policy})
				f.on("pull", ndjson(`{"type":"header","latest_version_id":1}`, v1,
					`{"type":"chunk","operations":[{"order":1,"table":"case_codes","row_id":"abc","command":"i","version_id":1}],"payload":{"case_codes":[{"code":"abc","name":"server"}]}}`,
					`{"type":"end","operation_count":1,"row_count":1}`))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				if c.edit {
					if _, err := db.ExecContext(ctx, "UPDATE case_codes SET name = 'mine' WHERE code = 'abc'"); err != nil {
						t.Fatal(err)
					}
				}
				f.on("pull", ndjson(`{"type":"header","latest_version_id":2}`, v2,
					`{"type":"chunk","operations":[{"order":2,"table":"case_codes","row_id":"ABC","command":"d","version_id":2}],"payload":{}}`,
					`{"type":"end","operation_count":1,"row_count":0}`))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				var rows []testmodels.CaseCode
				if err := db.NewSelect().Model(&rows).Order("code").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range rows {
					got = append(got, r.Code+"="+r.Name)
				}
				var ops []models.Operation
				if err := db.NewSelect().Model(&ops).Where("version_id IS NULL").Order("order").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				var pending []string
				for _, op := range ops {
					pending = append(pending, string(op.Command)+" "+op.RowID)
				}
				if g, p := strings.Join(got, ","), strings.Join(pending, ","); g != c.rows || p != c.pending {
					t.Fatalf("the node holds %q, pending %q; want %q, pending %q", g, p, c.rows, c.pending)
				}
			})
		}
	}
}

// caseItem references a CaseCode by its case-ignoring key.
type caseItem struct {
	bun.BaseModel `bun:"table:case_items"`
	ID            string               `bun:"id,pk"`
	Code          string               `bun:"code,notnull"`
	Parent        *testmodels.CaseCode `bun:"rel:belongs-to,join:code=code"`
}

func createCaseItems(ctx context.Context, db bun.IDB) error {
	if err := testmodels.CreateCaseCodes(ctx, db); err != nil {
		return err
	}
	coll := "NOCASE"
	if db.Dialect().Name() == dialect.PG {
		coll = "case_insensitive"
	}
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS case_items (id TEXT PRIMARY KEY, code TEXT COLLATE "+coll+" NOT NULL REFERENCES case_codes (code))")
	return err
}

// TestRespellFollowsReferences: when a pull gives the node's row "ABC"
// the spelling "abc" of another node's (merge.md K2), the node's rows
// referencing it follow, as K1 moves references: the pending item is
// pushed referencing the server's spelling. The row's log entries
// follow too, under the default policy (its insert kept) and under
// ServerWins (the server's row taken, the item's insert still pending).
func TestRespellFollowsReferences(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                  string
		policy                merge.Policy
		codes, items, pending string
	}{
		{name: "default", policy: merge.Default, codes: "abc=b1", items: "i1:abc", pending: "i abc,i i1"},
		{name: "serverwins", policy: merge.ServerWins, codes: "abc=server", items: "i1:abc", pending: "i i1"},
	}
	for _, c := range cases {
		for _, kind := range dbtest.Kinds {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				mods := []any{(*testmodels.CaseCode)(nil), (*caseItem)(nil)}
				db := synctest.ClientDB(t, kind, "case_items", createCaseItems, mods)
				cl := synctest.NewClientWith(t, nil, "n", db, createCaseItems, mods, &client.Config{URL: f.ts.URL + "/sync", DefaultPolicy: c.policy})
				for _, q := range []string{"INSERT INTO case_codes (code, name) VALUES ('ABC', 'b1')", "INSERT INTO case_items (id, code) VALUES ('i1', 'ABC')"} {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				f.on("pull", ndjson(`{"type":"header","latest_version_id":1}`,
					`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`,
					`{"type":"chunk","operations":[{"order":1,"table":"case_codes","row_id":"abc","command":"i","version_id":1}],"payload":{"case_codes":[{"code":"abc","name":"server"}]}}`,
					`{"type":"end","operation_count":1,"row_count":1}`))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				var codes, items []string
				if err := db.NewRaw("SELECT code || '=' || name FROM case_codes").Scan(ctx, &codes); err != nil {
					t.Fatal(err)
				}
				if err := db.NewRaw("SELECT id || ':' || code FROM case_items").Scan(ctx, &items); err != nil {
					t.Fatal(err)
				}
				var ops []models.Operation
				if err := db.NewSelect().Model(&ops).Where("version_id IS NULL").Order("order").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				var pending []string
				for _, op := range ops {
					pending = append(pending, string(op.Command)+" "+op.RowID)
				}
				got := strings.Join(codes, ",") + " / " + strings.Join(items, ",") + " / " + strings.Join(pending, ",")
				if want := c.codes + " / " + c.items + " / " + c.pending; got != want {
					t.Fatalf("codes / items / pending: %s, want %s", got, want)
				}
			})
		}
	}
}

// TestServerRespellsReferencedRow: the server respells a row's
// case-ignoring key (a direct UPDATE of "abc" to "ABC": its log holds d
// abc, i ABC), which a node's row references, unchanged there: the
// node's pull respells its row and writes the server's values into it
// (merge.md K2), the reference kept as the server's is. Before, the
// delete of "abc" was held back for the row referencing it (A3), the
// write of "ABC" went into "abc", and the held delete failed the pull
// with a foreign key violation at every pull until a Repair.
func TestServerRespellsReferencedRow(t *testing.T) {
	t.Parallel()
	del := `{"order":3,"table":"case_codes","row_id":"abc","command":"d","version_id":2}`
	ins := `{"order":4,"table":"case_codes","row_id":"ABC","command":"i","version_id":2}`
	payload := `"case_codes":[{"code":"ABC","name":"s2"}]`
	// The delete and the write come in one chunk, or in two (other rows
	// changed between them, or a chunk ends between them): then the
	// delete, held back while i1 references the row, must not take the
	// write with it at the end of the pull.
	for _, split := range []struct {
		name   string
		chunks []string
	}{
		{"one chunk", []string{`{"type":"chunk","operations":[` + del + `,` + ins + `],"payload":{` + payload + `}}`}},
		{"two chunks", []string{`{"type":"chunk","operations":[` + del + `],"payload":{}}`, `{"type":"chunk","operations":[` + ins + `],"payload":{` + payload + `}}`}},
	} {
		for _, kind := range dbtest.Kinds {
			t.Run(split.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				f := newFake(t)
				mods := []any{(*testmodels.CaseCode)(nil), (*caseItem)(nil)}
				db := synctest.ClientDB(t, kind, "case_items", createCaseItems, mods)
				cl := synctest.NewClientWith(t, nil, "n", db, createCaseItems, mods, &client.Config{URL: f.ts.URL + "/sync"})
				f.on("pull", ndjson(`{"type":"header","latest_version_id":1}`,
					`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`,
					`{"type":"chunk","operations":[{"order":1,"table":"case_codes","row_id":"abc","command":"i","version_id":1},{"order":2,"table":"case_items","row_id":"i1","command":"i","version_id":1}],"payload":{"case_codes":[{"code":"abc","name":"s1"}],"case_items":[{"id":"i1","code":"abc"}]}}`,
					`{"type":"end","operation_count":2,"row_count":2}`))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				lines := append([]string{`{"type":"header","latest_version_id":2}`,
					`{"type":"versions","versions":[{"version_id":2,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`},
					split.chunks...)
				f.on("pull", ndjson(append(lines, `{"type":"end","operation_count":2,"row_count":1}`)...))
				if _, err := cl.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				var codes, items []string
				if err := db.NewRaw("SELECT code || '=' || name FROM case_codes").Scan(ctx, &codes); err != nil {
					t.Fatal(err)
				}
				if err := db.NewRaw("SELECT id || ':' || code FROM case_items").Scan(ctx, &items); err != nil {
					t.Fatal(err)
				}
				n, err := db.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := strings.Join(codes, ",")+" / "+strings.Join(items, ",")+fmt.Sprintf(" / %d pending", n), "ABC=s2 / i1:abc / 0 pending"; got != want {
					t.Fatalf("codes / items / pending: %s, want %s", got, want)
				}
			})
		}
	}
}
