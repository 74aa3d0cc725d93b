package handlers_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// labelRow has a text primary key.
type labelRow struct {
	bun.BaseModel `bun:"table:label_rows"`

	Name  string `bun:"name,pk"`
	Color string `bun:"color,notnull"`
}

// Text is carried as it is or refused,
// never altered (docs/protocol.md "Rows and keys"). An operation's row_id
// with a \u escape of an unpaired surrogate (or bytes that are not UTF-8)
// was decoded to U+FFFD: a delete of "a\ud800" deleted the row "a\uFFFD",
// and an insert named "c\ud800" was accepted for the row "c\uFFFD". Both
// must be refused with 400 and write nothing.
func TestPushRowIDUnpairedSurrogate(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*labelRow)(nil)}, schema: synctest.CreateTables((*labelRow)(nil))})
			push := func(ops, payload string) (int, []byte, protocol.ErrorDetail) {
				return e.push(e.rawPush(ops, payload))
			}
			if status, raw, _ := push(`{"order":1,"table":"label_rows","row_id":"a\ufffd","command":"i"}`,
				`"label_rows":[{"name":"a\ufffd","color":"red"}]`); status != http.StatusOK {
				t.Fatalf("insert a\\ufffd: %d %s", status, raw)
			}
			for _, c := range []struct{ name, ops, payload string }{
				{"delete naming a lone surrogate", `{"order":1,"table":"label_rows","row_id":"a\ud800","command":"d"}`, ``},
				{"delete naming invalid UTF-8", "{\"order\":1,\"table\":\"label_rows\",\"row_id\":\"a\xff\",\"command\":\"d\"}", ``},
				{"insert naming a lone surrogate", `{"order":1,"table":"label_rows","row_id":"c\udc00","command":"i"}`,
					`"label_rows":[{"name":"c\ufffd","color":"red"}]`},
			} {
				before := e.state()
				status, raw, d := push(c.ops, c.payload)
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("%s: %d %s, want 400 bad_request", c.name, status, raw)
				}
				e.unchanged(before, c.name)
			}
		})
	}
}

// A query filter value is the column's value
// in its row form, and text that is not valid UTF-8 or holds an unpaired
// surrogate escape is refused (docs/protocol.md "Rows and keys", "GET
// BASE/query"). The filter eq.body=%FF (or "\ud800") was read as U+FFFD
// and matched the rows holding a real U+FFFD: want 400 bad_request.
func TestQueryFilterInvalidText(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			const id = "6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"
			body := fmt.Sprintf(`{"push_id":%q,"latest_version_id":0,"operations":[{"order":1,"table":"notes","row_id":%q,"command":"i"}],`+
				`"payload":{"notes":[{"id":%q,"body":"\ufffd","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":null}]}}`, newUUID(), id, id)
			if status, raw, _ := e.push([]byte(body)); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			for _, q := range []string{"table=notes&eq.body=%FF", `table=notes&eq.body=%22%5Cud800%22`} {
				status, raw, d := e.do(e.request(http.MethodGet, "query", q, nil))
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("query %s: %d %s, want 400 bad_request", q, status, raw)
				}
			}
		})
	}
}

// A text key too large for the indexes of a PostgreSQL server (about 2.7
// kB: the table's primary key, the log's and the staged keys' indexes) is
// refused with 400 bad_request, in a push or a chunk, and nothing is
// written or staged; SQLite has no such limit. Before, a chunk naming one
// was 500 internal, and a push deleting one 409 push_rejected blaming an
// ON DELETE action.
func TestPushTextKeyTooLargeForIndex(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*labelRow)(nil)}, schema: synctest.CreateTables((*labelRow)(nil))})
			// Random letters: PostgreSQL compresses a repeated text.
			rnd := rand.New(rand.NewPCG(3, 4))
			long := make([]byte, 20000)
			for i := range long {
				long[i] = byte('a' + rnd.IntN(26))
			}
			refuse := kind == dbtest.KindPostgres
			for _, c := range []struct {
				name, endpoint string
				body           func() []byte // built when sent: a push names the latest version
			}{
				{"push deleting it", "push", func() []byte {
					return e.rawPush(fmt.Sprintf(`{"order":1,"table":"label_rows","row_id":%q,"command":"d"}`, long), ``)
				}},
				{"push inserting it", "push", func() []byte {
					return e.rawPush(fmt.Sprintf(`{"order":1,"table":"label_rows","row_id":%q,"command":"i"}`, long),
						fmt.Sprintf(`"label_rows":[{"name":%q,"color":"red"}]`, long))
				}},
				{"chunk deleting it", "push-chunk", func() []byte {
					return []byte(fmt.Sprintf(`{"push_id":%q,"seq":0,"operations":[{"order":1,"table":"label_rows","row_id":%q,"command":"d"}]}`,
						newUUID(), long))
				}},
			} {
				before := e.state()
				var chunks int
				status, raw, d := e.do(e.request(http.MethodPost, c.endpoint, "", c.body()))
				if err := e.s.DB.NewSelect().Table("sync_push_chunks").ColumnExpr("COUNT(*)").Scan(ctx, &chunks); err != nil {
					t.Fatal(err)
				}
				switch {
				case !refuse && status != http.StatusOK:
					t.Errorf("%s: %d %s, want 200", c.name, status, raw)
				case refuse && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "label_rows")):
					t.Errorf("%s: %d %.300s, want 400 bad_request naming label_rows", c.name, status, raw)
				case refuse && chunks > 0:
					t.Errorf("%s: refused, but %d chunks staged", c.name, chunks)
				case refuse:
					e.unchanged(before, c.name)
				}
			}
		})
	}
}

// TestQueryEmptyTextKey: the empty text is a text key like any other
// (docs/protocol.md "Rows and keys", "GET BASE/query"). A page ending at
// the row "" answered no next, so a client took the rows as ended and
// missed the others, and after= (empty) was read as no after, so that it
// could not have asked past that row either; on a table of another key
// kind, after= is no key of the table's: 400 bad_request.
func TestQueryEmptyTextKey(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*labelRow)(nil)}, schema: synctest.CreateTables((*labelRow)(nil))})
			if status, raw, _ := e.push(e.rawPush(`{"order":1,"table":"label_rows","row_id":"","command":"i"},{"order":2,"table":"label_rows","row_id":"b","command":"i"}`,
				`"label_rows":[{"name":"","color":"red"},{"name":"b","color":"blue"}]`)); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			var got []string
			query := "limit=1&table=label_rows"
			for range 3 {
				status, raw, _ := e.do(e.request(http.MethodGet, "query", query, nil))
				if status != http.StatusOK {
					t.Fatalf("query %s: %d %s", query, status, raw)
				}
				var page struct {
					Rows []struct{ Name string }
					Next *string
				}
				if err := json.Unmarshal(raw, &page); err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Rows {
					got = append(got, r.Name)
				}
				if page.Next == nil {
					break
				}
				query = url.Values{"table": {"label_rows"}, "limit": {"1"}, "after": {*page.Next}}.Encode()
			}
			if strings.Join(got, ",") != ",b" {
				t.Fatalf("pages of limit 1 gave the rows %q, want \"\" then \"b\"", got)
			}
			status, raw, _ := e.do(e.request(http.MethodGet, "query", "after=&table=label_rows", nil))
			if status != http.StatusOK || !strings.Contains(string(raw), `"name":"b"`) || strings.Contains(string(raw), `"name":""`) {
				t.Fatalf("after= on a text-keyed table: %d %s, want the row b only", status, raw)
			}
		})
	}
	e := newEnv(t, dbtest.KindSQLite, nil)
	if status, raw, d := e.do(e.request(http.MethodGet, "query", "after=&table=lists", nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
		t.Fatalf("after= on an integer-keyed table: %d %s, want 400 bad_request", status, raw)
	}
}
