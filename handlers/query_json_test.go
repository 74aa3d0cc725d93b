package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestQueryJSONFilter: an eq. filter on a json column compares as the
// server's database does, and a json value is answered as the database
// gives it back, as docs/protocol.md says: PostgreSQL's jsonb by value,
// with its own member order; SQLite the text as pushed, member order
// counting (spacing aside). The doc said nothing, and a client taking
// the filter for a comparison by value missed rows on SQLite.
func TestQueryJSONFilter(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	for _, want := range []string{
		"A filter on a `json` column compares as the server's database does: PostgreSQL's `jsonb` by value (`{\"b\":1,\"a\":2}` matches `{\"a\":2,\"b\":1}`), SQLite the text of the value as pushed, so that there a value matches only with its members in the row's order (spacing aside)",
		"the server answers it as its database gives it back (PostgreSQL's `jsonb` reorders an object's members and keeps the last of a member named twice): compare JSON values by value",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/protocol.md does not say %q", want)
		}
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			id := newUUID()
			if status, raw, _ := e.push(e.rawPush(`{"order":1,"table":"notes","row_id":"`+id+`","command":"i"}`,
				`"notes":[{"id":"`+id+`","body":"b","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":{"b":1,"a":2}}]`)); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			query := func(meta string) []json.RawMessage {
				t.Helper()
				status, raw, _ := e.do(e.request(http.MethodGet, "query", url.Values{"table": {"notes"}, "eq.meta": {meta}}.Encode(), nil))
				if status != http.StatusOK {
					t.Fatalf("query eq.meta=%s: %d %s", meta, status, raw)
				}
				var qr protocol.QueryResponse
				if err := json.Unmarshal(raw, &qr); err != nil {
					t.Fatal(err)
				}
				return qr.Rows
			}
			if rows := query(`{"b": 1, "a": 2}`); len(rows) != 1 {
				t.Fatalf("eq.meta in the pushed order: %d rows, want 1", len(rows))
			}
			wantOther, meta := 0, `{"b":1,"a":2}`
			if kind == dbtest.KindPostgres {
				wantOther, meta = 1, `{"a":2,"b":1}`
			}
			if rows := query(`{"a":2,"b":1}`); len(rows) != wantOther {
				t.Fatalf("eq.meta in another order: %d rows, want %d", len(rows), wantOther)
			}
			rows := query(`{"b":1,"a":2}`)
			var row struct{ Meta json.RawMessage }
			if err := json.Unmarshal(rows[0], &row); err != nil {
				t.Fatal(err)
			}
			if string(row.Meta) != meta {
				t.Fatalf("meta answered as %s, want %s", row.Meta, meta)
			}
		})
	}
}
