package dbsync_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
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
		headers                     *protocol.SignedHeaders // form 2
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
		{
			name: "push form 2", endpoint: "push",
			body:    `{"push_id":"0b9b7f0e-6c8c-4a35-9f0f-6f2f3c1b8e55","latest_version_id":null,"operations":[],"payload":{}}`,
			headers: &protocol.SignedHeaders{Schema: "9f86d081884c7d659a2feaa0c55ad015"},
			canonical: "dbsync-v2\npush\n\n7\n1795435200000\n0123456789abcdef0123456789abcdef\n" +
				"6a7ca831664f8b40a91ef7d9b4dc3e5f3700d196e9412cda21bb5e25b581e51e\n" +
				"ec8122440c7b218fcf75cd4d7990c47b9f46fcae3f3e590763bb4828c7c0d885",
			signature: "a75477820ac11dddb39e63a4920ae48f601c5b50fc5045f3903d8fcebc20ef6f",
		},
	}
	doc := protocolDoc(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The canonical string as the document states it.
			sum := sha256.Sum256([]byte(c.body))
			prefix := "dbsync-v1\n"
			if c.headers != nil {
				prefix = "dbsync-v2\n"
			}
			canonical := prefix + c.endpoint + "\n" + c.query + "\n" + "7" + "\n" +
				"1795435200000" + "\n" + nonce + "\n" + hex.EncodeToString(sum[:])
			if h := c.headers; h != nil {
				// One more line: the hash of the three schema header
				// values, each followed by a newline.
				hs := sha256.Sum256([]byte(h.Schema + "\n" + h.Tables + "\n" + h.Nullable + "\n"))
				canonical += "\n" + hex.EncodeToString(hs[:])
			}
			if canonical != c.canonical {
				t.Errorf("canonical string\n got %q\nwant %q", canonical, c.canonical)
			}
			// The key is the secret's 64 characters as ASCII bytes.
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write([]byte(canonical))
			want := hex.EncodeToString(mac.Sum(nil))
			s := &protocol.Signed{Endpoint: c.endpoint, Query: c.query, NodeID: node, Timestamp: ts, Nonce: nonce, Body: []byte(c.body),
				Headers: c.headers}
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

// TestProtocolDocClock pins the server time's signature of
// docs/protocol.md's "Clocks" to protocol.ClockSignature and the documented
// rule.
func TestProtocolDocClock(t *testing.T) {
	const (
		secret     = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
		nonce      = "0123456789abcdef0123456789abcdef"
		salt       = "fedcba9876543210fedcba9876543210"
		canonical  = "dbsync-clock\n7\n" + nonce + "\n1795435200000\n" + salt + "\n"
		signature  = "fec4b64d177c101b50d619ed407c41a8b26e4068260c4af076d8d15d45830936"
		serverTime = 1795435200000
	)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(canonical))
	if got := hex.EncodeToString(mac.Sum(nil)); got != signature {
		t.Fatalf("the documented rule gives %s, the test expects %s", got, signature)
	}
	if got := protocol.ClockSignature(secret, 7, nonce, serverTime, salt); got != signature {
		t.Fatalf("protocol.ClockSignature = %s, want %s", got, signature)
	}
	if !protocol.VerifyClock(secret, 7, nonce, serverTime, salt, signature) || protocol.VerifyClock(secret, 7, nonce, serverTime+1, salt, signature) ||
		protocol.VerifyClock(secret, 7, nonce, serverTime, salt[1:]+"0", signature) {
		t.Fatal("protocol.VerifyClock")
	}
	doc := protocolDoc(t)
	for _, v := range []string{"```\n" + strings.TrimSuffix(canonical, "\n") + "\n```", signature, `"dbsync-clock\n" + NODE_ID + "\n" + NONCE + "\n" + SERVER_TIME + "\n" +`, `SALT + "\n"`} {
		if !strings.Contains(doc, v) {
			t.Errorf("docs/protocol.md does not show %q", v)
		}
	}
}

// TestProtocolDocPeerTarget pins the peers' signed form with a target
// (docs/protocol.md, "Peer HTTP"): peer.Signed with a Target signs the
// documented string, and one without it the first form.
func TestProtocolDocPeerTarget(t *testing.T) {
	secret := []byte("the mesh secret")
	from, target := uuid.MustParse("11111111-2222-4333-8444-555555555555"), uuid.MustParse("66666666-7777-4888-9999-aaaaaaaaaaaa")
	body := []byte(`{"x":1}`)
	sum := sha256.Sum256(body)
	s := peer.Signed{Endpoint: "apply", Query: "part=1", Peer: from, Timestamp: 1795435200000, Nonce: "0123456789abcdef0123456789abcdef", Body: body}
	for _, c := range []struct {
		target    uuid.UUID
		canonical string
	}{
		{uuid.Nil, "dbsync-peer-v1\napply\npart=1\n" + from.String() + "\n1795435200000\n" + s.Nonce + "\n" + hex.EncodeToString(sum[:]) + "\n"},
		{target, "dbsync-peer-v2\napply\npart=1\n" + from.String() + "\n1795435200000\n" + s.Nonce + "\n" + hex.EncodeToString(sum[:]) + "\n" + target.String() + "\n"},
	} {
		s.Target = c.target
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(c.canonical))
		if got, want := s.Sign(secret), hex.EncodeToString(mac.Sum(nil)); got != want {
			t.Errorf("target %s: peer.Signed.Sign = %s, the documented string gives %s", c.target, got, want)
		}
	}
	doc := protocolDoc(t)
	for _, v := range []string{`"dbsync-peer-v2\n" + ENDPOINT + "\n" + QUERY + "\n" + PEER_UUID + "\n" +`, `TARGET_UUID + "\n"`, "`X-Dbsync-Signature-Form: 2`", `"signing": 2`} {
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
	reg, err := dbsync.Track(dbtest.SQLite(t), testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse("0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01")
	cases := []struct {
		table, column, text string
		want                any    // the decoded field; nil: IS NULL
		err                 string // part of the error message; "": accepted
	}{
		{table: "todos", column: "done", text: "true", want: true},
		{table: "todos", column: "done", text: "false", want: false},
		{table: "todos", column: "done", text: "1", err: "eq.done=1: not a value of todos.done (a bool column: true or false): want a boolean, got 1"},
		{table: "todos", column: "done", text: "yes", err: "eq.done=yes: not a value of todos.done (a bool column: true or false)"},
		{table: "todos", column: "title", text: "buy milk", want: "buy milk"},
		{table: "todos", column: "title", text: `"buy milk"`, want: "buy milk"},
		{table: "todos", column: "title", text: `"\"quoted\""`, want: `"quoted"`},
		{table: "todos", column: "title", text: "42", want: "42"},
		{table: "todos", column: "title", text: "true", want: "true"},
		{table: "todos", column: "title", text: `"null"`, want: "null"},
		{table: "todos", column: "title", text: "null"},
		{table: "todos", column: "list_id", text: "3", want: int64(3)},
		{table: "todos", column: "list_id", text: "3.0", err: "eq.list_id=3.0: not a value of todos.list_id (a int column: a JSON integer such as 42): want an integer"},
		{table: "todos", column: "list_id", text: "abc", err: "eq.list_id=abc: not a value of todos.list_id (a int column"},
		{table: "notes", column: "id", text: id.String(), want: id},
		{table: "notes", column: "id", text: `"` + strings.ToUpper(id.String()) + `"`, want: id},
		{table: "notes", column: "id", text: "3", err: "eq.id=3: not a value of notes.id (a uuid column: a UUID): want a UUID"},
		{table: "notes", column: "created", text: "2026-11-23T10:00:00Z", want: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)},
		{table: "notes", column: "created", text: "2026-11-23", err: "eq.created=2026-11-23: not a value of notes.created (a time column"},
		{table: "notes", column: "tag", text: "red", want: sql.NullString{String: "red", Valid: true}},
		{table: "notes", column: "score", text: "2.5", want: 2.5},
	}
	for _, c := range cases {
		t.Run(c.table+"."+c.column+"="+c.text, func(t *testing.T) {
			table := reg.Table(c.table)
			strct := table.Codec().NewModel().Elem()
			isNull, err := table.Codec().ParseFilterValue(strct, c.column, c.text)
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
			got := reflect.Indirect(table.Column(c.column).Field().Value(strct)).Interface()
			if tm, ok := got.(time.Time); ok {
				got = tm.UTC()
			}
			if got != c.want {
				t.Fatalf("decoded %#v, want %#v", got, c.want)
			}
		})
	}
	todos := reg.Table("todos")
	if _, err := todos.Codec().ParseFilterValue(todos.Codec().NewModel().Elem(), "nope", "1"); !errors.Is(err, dbsync.ErrUnknownColumn) {
		t.Fatalf("unknown column: err = %v", err)
	}
}

// TestProtocolDocPeer: the Peer HTTP section documents every endpoint
// peerhttp.NewHandler routes and every wire code of package peer, read
// from their source, so that one added in code and not in the document
// fails here.
func TestProtocolDocPeer(t *testing.T) {
	doc := protocolDoc(t)
	start := strings.Index(doc, "\n## Peer HTTP")
	if start < 0 {
		t.Fatal(`docs/protocol.md has no "## Peer HTTP" section`)
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	fset := token.NewFileSet()
	handler, err := parser.ParseFile(fset, "peer/peerhttp/handler.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	routes := 0
	ast.Inspect(handler, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		lit, isLit := call.Args[0].(*ast.BasicLit)
		if !ok || !isLit || (sel.Sel.Name != "Get" && sel.Sel.Name != "Post") {
			return true
		}
		path, _ := strconv.Unquote(lit.Value)
		routes++
		if h := "### " + strings.ToUpper(sel.Sel.Name) + " PEERBASE" + path; !strings.Contains(section, h) {
			t.Errorf("docs/protocol.md's Peer HTTP section has no %q", h)
		}
		return true
	})
	if routes == 0 {
		t.Fatal("found no route in peer/peerhttp/handler.go")
	}
	node, err := parser.ParseFile(fset, "peer/node.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes := 0
	for _, d := range node.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			v := spec.(*ast.ValueSpec)
			for i, name := range v.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(v.Values) {
					continue
				}
				lit, ok := v.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				code, _ := strconv.Unquote(lit.Value)
				codes++
				if peer.ErrorForCode(code) == nil {
					t.Errorf("peer.%s = %q: peer.ErrorForCode does not know it", name.Name, code)
				}
				if row := "| `" + code + "` |"; !strings.Contains(section, row) {
					t.Errorf("docs/protocol.md's table of peer codes has no row %q (peer.%s)", row, name.Name)
				}
			}
		}
	}
	if codes == 0 {
		t.Fatal("found no Code constant in peer/node.go")
	}
}
