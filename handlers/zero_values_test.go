package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// 0 is an integer key like any other: a push inserting row 0 of a table
// whose key is autoincrement stores row 0. Before, the row was written
// with a NULL key (bun's nullzero, implied by autoincrement): PostgreSQL
// answered 500 internal (NOT NULL violation); SQLite stored the row under
// new keys while the log said row 0, and other nodes pulled a row that
// did not exist.
func TestPushZeroIntegerKey(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			for _, c := range []struct{ table, row string }{
				{"todos", `{"id":0,"list_id":1,"title":"zero","done":false}`},
				{"lists", `{"id":0,"name":"zero"}`},
			} {
				before := e.state()
				status, raw, _ := e.push(e.rawPush(fmt.Sprintf(`{"order":1,"table":%q,"row_id":"0","command":"i"}`, c.table),
					fmt.Sprintf(`%q:[%s]`, c.table, c.row)))
				if status != http.StatusOK {
					t.Fatalf("push of %s row 0: %d %s, want 200", c.table, status, raw)
				}
				{
					was, now := before.Dump[c.table], e.state().Dump[c.table]
					if len(now) != len(was)+1 {
						t.Fatalf("%s row 0 accepted; rows were %v, now %v: want one more, row 0", c.table, was, now)
					}
					found := false
					for _, r := range now {
						found = found || strings.HasPrefix(r, `{"id":0,`)
					}
					if !found {
						t.Fatalf("%s row 0 accepted, but no row 0 stored: %v", c.table, now)
					}
				}
			}
		})
	}
}

// stampRow has the usual bun idiom for a creation time (nullzero, NOT
// NULL, with a default), and a text column with a length.
type stampRow struct {
	bun.BaseModel `bun:"table:stamp_rows"`

	ID      int64     `bun:"id,pk"`
	Created time.Time `bun:"created,nullzero,notnull,default:current_timestamp"`
	Code    string    `bun:"code,type:varchar(4)"`
}

// A pushed value the server's database refuses is a 400 naming the row
// (a nullzero column's zero value is written as NULL, as bun writes it,
// and a NOT NULL column refuses it; PostgreSQL refuses a text longer than
// its varchar; SQLite does not), and nothing is written. Before, both
// were 500 internal, naming nothing.
func TestPushValueTheDatabaseRefuses(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*stampRow)(nil)}, schema: synctest.CreateTables((*stampRow)(nil))})
			for i, c := range []struct {
				name, created, code string
				refused             string // "": stored; else a part of the 400's message
			}{
				{"zero time in a NOT NULL column", `"0001-01-01T00:00:00Z"`, `"ab"`, `stamp_rows.created of row \"1\"`},
				{"text longer than its varchar", `"2026-01-02T03:04:05Z"`, `"toolong"`, map[string]string{dbtest.KindPostgres: "stamp_rows"}[kind]},
			} {
				id := i + 1
				before := e.state()
				status, raw, d := e.push(e.rawPush(fmt.Sprintf(`{"order":1,"table":"stamp_rows","row_id":"%d","command":"i"}`, id),
					fmt.Sprintf(`"stamp_rows":[{"id":%d,"created":%s,"code":%s}]`, id, c.created, c.code)))
				if c.refused == "" {
					st, q, _ := e.do(e.request(http.MethodGet, "query", fmt.Sprintf("table=stamp_rows&eq.id=%d", id), nil))
					want := fmt.Sprintf(`{"rows":[{"id":%d,"created":%s,"code":%s}]}`, id, c.created, c.code)
					if status != http.StatusOK || st != http.StatusOK || strings.TrimSpace(string(q)) != want {
						t.Errorf("%s: push %d %s; the server holds %d %s, want %s", c.name, status, raw, st, q, want)
					}
					continue
				}
				if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(string(raw), c.refused) {
					t.Errorf("%s: %d %s, want 400 bad_request naming %s", c.name, status, raw, c.refused)
				}
				e.unchanged(before, c.name)
			}
		})
	}
}

// A push whose delete sets off what the database refuses in a row the
// push does not write (an untracked table's foreign key, ON DELETE SET
// NULL into a NOT NULL column) is refused with 409 push_rejected naming
// that table, and writes nothing; it was a 500. On SQLite, where the
// server applies with foreign keys off, dbsync runs the action at the end
// of the apply (store.RunDeleteActions), with the same refusal.
func TestPushSetsOffARefusal(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			schema := func(ctx context.Context, db bun.IDB) error {
				if err := testmodels.CreateSchema(ctx, db); err != nil {
					return err
				}
				_, err := db.ExecContext(ctx, `CREATE TABLE list_extras (id BIGINT PRIMARY KEY,
  list_id BIGINT NOT NULL REFERENCES lists (id) ON DELETE SET NULL)`)
				return err
			}
			e := newEnv(t, kind, &envConfig{models: testmodels.All(), schema: schema})
			if status, raw, _ := e.push(e.pushBody(1, "first")); status != http.StatusOK {
				t.Fatalf("first push: %d %s", status, raw)
			}
			if _, err := e.s.DB.ExecContext(ctx, "INSERT INTO list_extras (id, list_id) VALUES (1, 1)"); err != nil {
				t.Fatal(err)
			}
			before := e.state()
			status, raw, d := e.push(e.rawPush(`{"order":1,"table":"lists","row_id":"1","command":"d"}`, ""))
			if status != http.StatusConflict || d.Code != protocol.CodePushRejected || !strings.Contains(d.Message, "list_extras") {
				t.Fatalf("a delete setting off a NOT NULL violation: %d %s, want 409 push_rejected naming list_extras", status, raw)
			}
			e.unchanged(before, "a delete setting off a refusal")
		})
	}
}

// nullTimeRow has a bun.NullTime column: a time.Time that bun writes as a
// time (NULL when zero).
type nullTimeRow struct {
	bun.BaseModel `bun:"table:null_time_rows"`

	ID int64        `bun:"id,pk"`
	At bun.NullTime `bun:"at"`
}

// A bun.NullTime is refused outside years 1-9999 in UTC as a time.Time
// is (400, nothing written). Before, PostgreSQL refused year 0 with a
// 500, and year 10000 was stored on both databases, after which every
// query, pull and repair of the table failed with 500 internal.
func TestPushNullTimeOutOfRange(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*nullTimeRow)(nil)}, schema: synctest.CreateTables((*nullTimeRow)(nil))})
			row := func(id int, at string) []byte {
				return e.rawPush(fmt.Sprintf(`{"order":1,"table":"null_time_rows","row_id":"%d","command":"i"}`, id),
					fmt.Sprintf(`"null_time_rows":[{"id":%d,"at":%s}]`, id, at))
			}
			for i, c := range []struct {
				name, at string
				ok       bool
			}{
				{"year 0", `"0000-01-01T00:00:00Z"`, false},
				{"year 0 in UTC", `"0001-01-01T00:30:00+01:00"`, false},
				{"year 10000 in UTC", `"9999-12-31T23:59:59-01:00"`, false},
				{"null", `null`, true},
				{"year 1", `"0001-01-01T00:00:01Z"`, true},
				{"year 9999", `"9999-12-31T23:59:59.999999Z"`, true},
			} {
				before := e.state()
				status, raw, d := e.push(row(i+1, c.at))
				switch {
				case c.ok && status != http.StatusOK:
					t.Errorf("%s: %d %s, want 200", c.name, status, raw)
				case !c.ok && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "null_time_rows.at")):
					t.Errorf("%s: %d %s, want 400 bad_request naming null_time_rows.at", c.name, status, raw)
				case !c.ok:
					e.unchanged(before, c.name)
				}
			}
			for _, q := range []string{"table=null_time_rows&eq.at=0000-01-01T00:00:00Z", "table=null_time_rows&eq.at=9999-12-31T23:59:59-01:00"} {
				if status, raw, d := e.do(e.request(http.MethodGet, "query", q, nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
					t.Errorf("query %s: %d %s, want 400 bad_request", q, status, raw)
				}
			}
			// The table can still be read whole.
			if status, raw, _ := e.do(e.request(http.MethodGet, "query", "table=null_time_rows", nil)); status != http.StatusOK {
				t.Errorf("query: %d %s", status, raw)
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "repair", "", nil)); status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Errorf("repair: %d %s", status, raw)
			}
			if status, raw, _ := e.do(e.request(http.MethodPost, "pull", "", []byte(`{}`))); status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Errorf("pull: %d %s", status, raw)
			}
		})
	}
}

// structRow has a plain struct column, which bun writes as JSON.
type structRow struct {
	bun.BaseModel `bun:"table:struct_rows"`

	ID    int64 `bun:"id,pk"`
	Label struct {
		Name string `json:"name"`
	} `bun:"label"`
}

// A struct column's value is stored as sent, or refused, as a
// json.RawMessage's is (TestJSONNulEscape): bun rewrites the text \u0000
// when it writes JSON. Before, a pushed label "a\u0000b" was stored as
// "a\\u0000b", and pulled so by every other node.
func TestPushStructJSONNulEscape(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*structRow)(nil)}, schema: synctest.CreateTables((*structRow)(nil))})
			for i, c := range []struct {
				name, label string
				ok          bool
			}{
				{"NUL escape", `{"name":"a\u0000b"}`, false},
				{"the text \\u0000", `{"name":"a\\u0000b"}`, false},
				{"plain", `{"name":"a\\u0001b"}`, true},
			} {
				id := i + 1
				before := e.state()
				status, raw, d := e.push(e.rawPush(fmt.Sprintf(`{"order":1,"table":"struct_rows","row_id":"%d","command":"i"}`, id),
					fmt.Sprintf(`"struct_rows":[{"id":%d,"label":%s}]`, id, c.label)))
				if !c.ok {
					if status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "struct_rows.label") {
						t.Errorf("%s: %d %s, want 400 bad_request naming struct_rows.label", c.name, status, raw)
					}
					e.unchanged(before, c.name)
					continue
				}
				st, q, _ := e.do(e.request(http.MethodGet, "query", fmt.Sprintf("table=struct_rows&eq.id=%d", id), nil))
				want := fmt.Sprintf(`{"rows":[{"id":%d,"label":%s}]}`, id, c.label)
				if status != http.StatusOK || st != http.StatusOK || strings.TrimSpace(string(q)) != want {
					t.Errorf("%s: push %d %s; the server holds %d %s, want %s", c.name, status, raw, st, q, want)
				}
			}
		})
	}
}

// typedRow has text fields in columns whose PostgreSQL types parse them.
type typedRow struct {
	bun.BaseModel `bun:"table:typed_rows"`

	ID   int64  `bun:"id,pk"`
	Addr string `bun:"addr,type:inet"`
	Day  string `bun:"day,type:date"`
	Doc  string `bun:"doc,type:xml"`
}

// A pushed value, or a query filter, that the column's type refuses on
// PostgreSQL (invalid input syntax, a date out of range, invalid XML:
// data exceptions) is a 400 naming
// the table, and nothing is written; SQLite stores and finds any text.
// Before, both were 500 internal.
func TestValueTheColumnTypeRefuses(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*typedRow)(nil)}, schema: synctest.CreateTables((*typedRow)(nil))})
			refused := kind == dbtest.KindPostgres
			for i, c := range []struct {
				name, addr, day, doc string
				refuse               bool
			}{
				{"valid", "10.0.0.1", "2024-01-02", "<a/>", false},
				{"not an address", "not an address", "2024-01-02", "<a/>", refused},
				{"not a date", "10.0.0.1", "not a date", "<a/>", refused},
				{"month 13", "10.0.0.1", "2024-13-01", "<a/>", refused},
				{"not XML", "10.0.0.1", "2024-01-02", "<a", refused},
			} {
				id := i + 1
				before := e.state()
				status, raw, d := e.push(e.rawPush(fmt.Sprintf(`{"order":1,"table":"typed_rows","row_id":"%d","command":"i"}`, id),
					fmt.Sprintf(`"typed_rows":[{"id":%d,"addr":%q,"day":%q,"doc":%q}]`, id, c.addr, c.day, c.doc)))
				switch {
				case !c.refuse && status != http.StatusOK:
					t.Errorf("push %s: %d %s, want 200", c.name, status, raw)
				case c.refuse && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "typed_rows")):
					t.Errorf("push %s: %d %s, want 400 bad_request naming typed_rows", c.name, status, raw)
				case c.refuse:
					e.unchanged(before, "refused push")
				}
				if c.doc != "<a/>" {
					continue // no equality on XML: not a filter
				}
				q := "table=typed_rows&eq.addr=" + url.QueryEscape(c.addr) + "&eq.day=" + url.QueryEscape(c.day)
				status, raw, d = e.do(e.request(http.MethodGet, "query", q, nil))
				switch {
				case !c.refuse && status != http.StatusOK:
					t.Errorf("query %s: %d %s, want 200", q, status, raw)
				case c.refuse && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "typed_rows")):
					t.Errorf("query %s: %d %s, want 400 bad_request naming typed_rows", q, status, raw)
				}
			}
		})
	}
}

// docRow has columns whose PostgreSQL types have no equality operator.
type docRow struct {
	bun.BaseModel `bun:"table:doc_rows"`

	ID   int64           `bun:"id,pk"`
	Meta json.RawMessage `bun:"meta,type:json"`
	Doc  string          `bun:"doc,type:xml"`
}

// A query filter on a column whose PostgreSQL type has no equality
// operator (json, xml) is a 400 naming the table; SQLite compares them
// as text. Before, PostgreSQL's was 500 internal.
func TestQueryFilterWithoutEquality(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*docRow)(nil)}, schema: synctest.CreateTables((*docRow)(nil))})
			if status, raw, _ := e.push(e.rawPush(`{"order":1,"table":"doc_rows","row_id":"1","command":"i"}`,
				`"doc_rows":[{"id":1,"meta":{"a":1},"doc":"<a/>"}]`)); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			for _, c := range []struct {
				filter string
				refuse bool
			}{
				{"eq.id=1", false},
				{"eq.meta=" + url.QueryEscape(`{"a":1}`), kind == dbtest.KindPostgres},
				{"eq.doc=" + url.QueryEscape("<a/>"), kind == dbtest.KindPostgres},
				{"eq.meta=null", false},
			} {
				q := "table=doc_rows&" + c.filter
				status, raw, d := e.do(e.request(http.MethodGet, "query", q, nil))
				switch {
				case !c.refuse && status != http.StatusOK:
					t.Errorf("query %s: %d %s, want 200", q, status, raw)
				case c.refuse && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "doc_rows")):
					t.Errorf("query %s: %d %s, want 400 bad_request naming doc_rows", q, status, raw)
				}
			}
		})
	}
}

// A pushed value too large for an index of its column on PostgreSQL (a
// btree entry holds at most about 2.7 kB: lists.name is unique) is a 400
// naming the table, and nothing is written; SQLite has no such limit.
// Before, PostgreSQL's was 500 internal.
func TestPushValueTooLargeForIndex(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			// Random letters: PostgreSQL compresses a repeated text below
			// the limit.
			rnd := rand.New(rand.NewPCG(1, 2))
			random := make([]byte, 20000)
			for i := range random {
				random[i] = byte('a' + rnd.IntN(26))
			}
			for i, c := range []struct {
				name, value string
				refuse      bool
			}{
				{"short", "groceries", false},
				{"random 20 kB", string(random), kind == dbtest.KindPostgres},
				{"repeated 300 kB", strings.Repeat("x", 300000), kind == dbtest.KindPostgres},
			} {
				before := e.state()
				status, raw, d := e.push(e.pushBody(int64(i+1), c.value))
				switch {
				case !c.refuse && status != http.StatusOK:
					t.Errorf("%s: %d %s, want 200", c.name, status, raw)
				case c.refuse && (status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "lists")):
					t.Errorf("%s: %d %s, want 400 bad_request naming lists", c.name, status, raw)
				case c.refuse:
					e.unchanged(before, c.name)
				}
			}
		})
	}
}

// uintRow has unsigned integer columns.
type uintRow struct {
	bun.BaseModel `bun:"table:uint_rows"`

	ID int64  `bun:"id,pk"`
	N  uint64 `bun:"n"`
	P  *uint  `bun:"p"`
	S  uint32 `bun:"s"`
}

// An unsigned integer above 2^63-1 is refused (400, nothing written), as
// neither database's integers hold it: PostgreSQL refuses it (bigint out
// of range); SQLite stored it as a REAL, rounded, after which every
// query, pull and repair of the table failed with 500 internal (bun
// cannot scan a REAL into a uint64).
func TestPushUintAboveInt64(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*uintRow)(nil)}, schema: synctest.CreateTables((*uintRow)(nil))})
			for i, c := range []struct {
				name, n, p string
				ok         bool
			}{
				{"2^63-1", "9223372036854775807", "9223372036854775807", true},
				{"null pointer", "0", "null", true},
				{"2^63", "9223372036854775808", "1", false},
				{"uint64 max", "18446744073709551615", "1", false},
				{"pointer 2^63", "1", "9223372036854775808", false},
			} {
				id := i + 1
				before := e.state()
				status, raw, d := e.push(e.rawPush(fmt.Sprintf(`{"order":1,"table":"uint_rows","row_id":"%d","command":"i"}`, id),
					fmt.Sprintf(`"uint_rows":[{"id":%d,"n":%s,"p":%s,"s":7}]`, id, c.n, c.p)))
				switch {
				case c.ok:
					st, q, _ := e.do(e.request(http.MethodGet, "query", fmt.Sprintf("table=uint_rows&eq.id=%d", id), nil))
					want := fmt.Sprintf(`{"rows":[{"id":%d,"n":%s,"p":%s,"s":7}]}`, id, c.n, c.p)
					if status != http.StatusOK || st != http.StatusOK || strings.TrimSpace(string(q)) != want {
						t.Errorf("%s: push %d %s; the server holds %d %s, want %s", c.name, status, raw, st, q, want)
					}
				case status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest || !strings.Contains(d.Message, "uint_rows."):
					t.Errorf("%s: %d %s, want 400 bad_request naming uint_rows", c.name, status, raw)
				default:
					e.unchanged(before, c.name)
				}
			}
			if status, raw, d := e.do(e.request(http.MethodGet, "query", "table=uint_rows&eq.n=9223372036854775808", nil)); status != http.StatusBadRequest || d.Code != protocol.CodeBadRequest {
				t.Errorf("query eq.n=2^63: %d %s, want 400 bad_request", status, raw)
			}
			// The table can still be read whole.
			if status, raw, _ := e.do(e.request(http.MethodGet, "query", "table=uint_rows", nil)); status != http.StatusOK {
				t.Errorf("query: %d %s", status, raw)
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "repair", "", nil)); status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Errorf("repair: %d %s", status, raw)
			}
			if status, raw, _ := e.do(e.request(http.MethodPost, "pull", "", []byte(`{}`))); status != http.StatusOK || !strings.Contains(string(raw), `"type":"end"`) {
				t.Errorf("pull: %d %s", status, raw)
			}
		})
	}
}

// A value the server's database refuses without naming its column (a
// number out of range on PostgreSQL) is a 400 naming the table alone.
// Before, the message read "uint_rows. of row \"\"", an empty column and
// key. SQLite stores the value.
func TestPushRefusalMessageNamesWhatItKnows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{models: []any{(*uintRow)(nil)}, schema: synctest.CreateTables((*uintRow)(nil))})
			status, raw, d := e.push(e.rawPush(`{"order":1,"table":"uint_rows","row_id":"1","command":"i"}`,
				`"uint_rows":[{"id":1,"n":1,"p":null,"s":4294967295}]`))
			if kind == dbtest.KindSQLite {
				if status != http.StatusOK {
					t.Fatalf("push: %d %s, want 200", status, raw)
				}
				return
			}
			want := "dbsync: uint_rows: dbsync: bad request: the server's database refuses a number out of its column's range"
			if status != http.StatusBadRequest || d.Message != want {
				t.Fatalf("push: %d %s, want 400 with the message %q", status, raw, want)
			}
		})
	}
}
