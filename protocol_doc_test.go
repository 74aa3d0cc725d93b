package dbsync_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// The worked examples of docs/protocol.md. Each test computes the values
// by the rule the document states, checks that the library agrees, and
// checks that the document prints exactly these values.

func protocolDoc(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

func TestProtocolDocSignature(t *testing.T) {
	const (
		secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
		node   = 7
		ts     = 1795435200000 // 2026-11-23T12:00:00Z
		nonce  = "0123456789abcdef0123456789abcdef"
	)
	query := url.Values{"table": {"todos"}, "eq.done": {"false"}, "eq.title": {"buy milk"}}
	cases := []struct {
		name, endpoint, query, body string
		canonical, signature        string
	}{
		{
			name: "push", endpoint: "push",
			body: `{"push_id":"0b9b7f0e-6c8c-4a35-9f0f-6f2f3c1b8e55","latest_version_id":null,"operations":[],"payload":{}}`,
			canonical: "dbsync-v1\npush\n\n7\n1795435200000\n0123456789abcdef0123456789abcdef\n" +
				"6a7ca831664f8b40a91ef7d9b4dc3e5f3700d196e9412cda21bb5e25b581e51e",
			signature: "8516b86e2f0ee03a110829dbeac9c230f46b4e67ab7e8345e9866acea99d07dc",
		},
		{
			name: "query", endpoint: "query", query: query.Encode(),
			canonical: "dbsync-v1\nquery\neq.done=false&eq.title=buy+milk&table=todos\n7\n1795435200000\n0123456789abcdef0123456789abcdef\n" +
				"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			signature: "650b493d5d58dd03a6531abc6c7a2b1b0eab32b8ea24b818f1aa4f85bd32f1e2",
		},
	}
	doc := protocolDoc(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The canonical string as the document states it.
			sum := sha256.Sum256([]byte(c.body))
			canonical := "dbsync-v1\n" + c.endpoint + "\n" + c.query + "\n" + "7" + "\n" +
				"1795435200000" + "\n" + nonce + "\n" + hex.EncodeToString(sum[:])
			if canonical != c.canonical {
				t.Errorf("canonical string\n got %q\nwant %q", canonical, c.canonical)
			}
			// The key is the secret's 64 characters as ASCII bytes.
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write([]byte(canonical))
			want := hex.EncodeToString(mac.Sum(nil))
			s := &dbsync.Signed{Endpoint: c.endpoint, Query: c.query, NodeID: node, Timestamp: ts, Nonce: nonce, Body: []byte(c.body)}
			if got := s.Sign(secret); got != want {
				t.Errorf("Signed.Sign = %s, the documented rule gives %s", got, want)
			}
			if !s.Verify(secret, want) {
				t.Error("Signed.Verify refuses the documented signature")
			}
			if want != c.signature {
				t.Errorf("signature %s, the test expects %s", want, c.signature)
			}
			for _, v := range []string{"```\n" + c.canonical + "\n```", c.signature, c.body, c.query} {
				if !strings.Contains(doc, v) {
					t.Errorf("docs/protocol.md does not show %q", v)
				}
			}
		})
	}
	if time.UnixMilli(ts).UTC().Format(time.RFC3339) != "2026-11-23T12:00:00Z" {
		t.Error("timestamp comment is wrong")
	}
}

// The models of examples/internal/todoapp (the to-do example's schema).
type docList struct {
	bun.BaseModel `bun:"table:lists"`

	ID   uuid.UUID `bun:"id,pk,type:uuid"`
	Name string    `bun:"name,notnull,unique"`
}

type docTodo struct {
	bun.BaseModel `bun:"table:todos"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	ListID  uuid.UUID `bun:"list_id,notnull,type:uuid"`
	Title   string    `bun:"title,notnull"`
	Done    bool      `bun:"done,notnull"`
	Updated time.Time `bun:"updated,notnull"`

	List *docList `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

func TestProtocolDocFingerprint(t *testing.T) {
	const lines = "table lists 2 id\n" +
		"  id uuid\n" +
		"  name string\n" +
		"table todos 2 id\n" +
		"  done bool\n" +
		"  id uuid\n" +
		"  list_id uuid\n" +
		"  title string\n" +
		"  updated time\n"
	const fingerprint = "0953cb9bc3d152c03c600f14451a5af2"
	sum := sha256.Sum256([]byte(lines))
	if got := hex.EncodeToString(sum[:16]); got != fingerprint {
		t.Errorf("the documented rule gives %s, the test expects %s", got, fingerprint)
	}
	reg, err := dbsync.Track(dbtest.SQLite(t), (*docList)(nil), (*docTodo)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Fingerprint(); got != fingerprint {
		t.Errorf("Registry.Fingerprint = %s, want %s", got, fingerprint)
	}
	doc := protocolDoc(t)
	for _, v := range []string{"```\n" + lines + "```", fingerprint} {
		if !strings.Contains(doc, v) {
			t.Errorf("docs/protocol.md does not show %q", v)
		}
	}
}

// TestQueryFilterValues pins how a query's eq.<column> values are read
// (docs/protocol.md, GET query): the column's wire form, quotes optional
// for string-valued classes, null for NULL, and no conversion between
// types.
func TestQueryFilterValues(t *testing.T) {
	reg, err := dbsync.Track(dbtest.SQLite(t), (*docList)(nil), (*docTodo)(nil))
	if err != nil {
		t.Fatal(err)
	}
	todos := reg.Table("todos")
	list := uuid.MustParse("0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01")
	cases := []struct {
		column, text string
		want         any    // the decoded field; nil: IS NULL
		err          string // part of the error message; "": accepted
	}{
		{column: "done", text: "true", want: true},
		{column: "done", text: "false", want: false},
		{column: "done", text: "1", err: "eq.done=1: not a value of todos.done (a bool column: true or false): want a boolean, got 1"},
		{column: "done", text: "yes", err: "eq.done=yes: not a value of todos.done (a bool column: true or false)"},
		{column: "title", text: "buy milk", want: "buy milk"},
		{column: "title", text: `"buy milk"`, want: "buy milk"},
		{column: "title", text: `"\"quoted\""`, want: `"quoted"`},
		{column: "title", text: "42", want: "42"},
		{column: "title", text: "true", want: "true"},
		{column: "title", text: `"null"`, want: "null"},
		{column: "title", text: "null"},
		{column: "list_id", text: list.String(), want: list},
		{column: "list_id", text: `"` + strings.ToUpper(list.String()) + `"`, want: list},
		{column: "list_id", text: "3", err: "eq.list_id=3: not a value of todos.list_id (a uuid column: a UUID): want a UUID"},
		{column: "updated", text: "2026-11-23T10:00:00Z", want: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)},
		{column: "updated", text: "2026-11-23", err: "eq.updated=2026-11-23: not a value of todos.updated (a time column"},
	}
	for _, c := range cases {
		t.Run(c.column+"="+c.text, func(t *testing.T) {
			strct := todos.NewModel().Elem()
			isNull, err := todos.ParseFilterValue(strct, c.column, c.text)
			if c.err != "" {
				if !errors.Is(err, dbsync.ErrBadRequest) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want a bad request containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if isNull != (c.want == nil) {
				t.Fatalf("isNull = %v, want %v", isNull, c.want == nil)
			}
			if c.want == nil {
				return
			}
			var got any
			switch c.column {
			case "done":
				got = strct.FieldByName("Done").Interface()
			case "title":
				got = strct.FieldByName("Title").Interface()
			case "list_id":
				got = strct.FieldByName("ListID").Interface()
			case "updated":
				got = strct.FieldByName("Updated").Interface().(time.Time).UTC()
			}
			if got != c.want {
				t.Fatalf("decoded %#v, want %#v", got, c.want)
			}
		})
	}
	if _, err := todos.ParseFilterValue(todos.NewModel().Elem(), "nope", "1"); !errors.Is(err, dbsync.ErrUnknownColumn) {
		t.Fatalf("unknown column: err = %v", err)
	}
}
