package handlers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// The fuzz targets drive a live in-process server on SQLite. Their seed
// corpus runs with the normal tests; fuzz with e.g.
//
//	go test ./handlers -run '^$' -fuzz FuzzPushRequest -fuzztime 60s

// FuzzPushRequest fuzzes the body of a correctly signed POST /push. The
// server must never answer 5xx (nor panic), must answer errors as JSON, and
// a refused push must write nothing. The text "$LATEST" (with its quotes)
// is replaced by the server's latest version, so that pushes can succeed.
func FuzzPushRequest(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	const id = `"6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e"`
	seeds := []string{
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a01","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"1","command":"i"}],"payload":{"lists":[{"id":1,"name":"home"}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a02","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"2","command":"i"},{"order":2,"table":"todos","row_id":"1","command":"i"},{"order":3,"table":"todos","row_id":"1","command":"u"}],"payload":{"lists":[{"id":2,"name":"work"}],"todos":[{"id":1,"list_id":2,"title":"mail","done":true}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a03","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"1","command":"u"},{"order":2,"table":"lists","row_id":"2","command":"u"}],"payload":{"lists":[{"id":1,"name":"work"},{"id":2,"name":"home"}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a04","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"2","command":"d"}]}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a05","latest_version_id":"$LATEST","operations":[{"order":1,"table":"notes","row_id":` + id + `,"command":"i"}],"payload":{"notes":[{"id":` + id + `,"body":"b","created":"2024-01-01T00:00:00Z","data":"AAEC","score":1.5,"tag":"t","count":3,"meta":{"a":[1,2]}}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a06","latest_version_id":"$LATEST","operations":[{"order":1,"table":"todos","row_id":"5","command":"i"}],"payload":{"todos":[{"id":5,"list_id":99,"title":"orphan","done":false}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a07","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"3","command":"i"}],"payload":{"lists":[{"id":3,"name":"home"}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a08","latest_version_id":"$LATEST","operations":[]}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a09","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"7","command":"i"}],"payload":{}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0a","latest_version_id":"$LATEST","operations":[{"order":1,"table":"notes","row_id":` + id + `,"command":"u"}],"payload":{"notes":[{"id":` + id + `,"body":"a\u0000b","created":"9999-12-31T23:59:59-01:00","data":null,"score":null,"tag":null,"count":0,"meta":null}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0b","latest_version_id":1000,"operations":[{"order":1,"table":"lists","row_id":"8","command":"i"}],"payload":{"lists":[{"id":8,"name":"x"}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0c","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"-9223372036854775808","command":"i"}],"payload":{"lists":[{"id":-9223372036854775808,"name":"min"}]}}`,
		`{"push_id":"x","operations":[{"table":"todos; DROP TABLE todos; --","row_id":"1","command":"d"}]}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0d","payload":{"lists":[{"id":1,"name":"n","name\"; DROP TABLE lists; --":1}]}}`,
		`{"push_id":5}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0e","latest_version_id":"$LATEST"} trailing`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0f","payload":{"lists":[` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `]}}`,
		`null`, `[]`, `{`, ``, "\xff\xfe",
		// Two operations on one row; a row no operation names; invalid text.
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a10","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"9","command":"i"},{"order":2,"table":"lists","row_id":"09","command":"d"}],"payload":{"lists":[{"id":9,"name":"x"}]}}`,
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a11","latest_version_id":"$LATEST","operations":[{"order":1,"table":"lists","row_id":"9","command":"i"}],"payload":{"lists":[{"id":9,"name":"x"},{"id":10,"name":"y"}]}}`,
		"{\"push_id\":\"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a12\",\"latest_version_id\":\"$LATEST\",\"operations\":[{\"order\":1,\"table\":\"lists\",\"row_id\":\"9\",\"command\":\"i\"}],\"payload\":{\"lists\":[{\"id\":9,\"name\":\"caf\xe9\"}]}}",
		`{"push_id":"0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a13","latest_version_id":"$LATEST","operations":[{"order":1,"table":"notes","row_id":` + id + `,"command":"i"}],"payload":{"notes":[{"id":` + id + `,"body":"\ud800","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":"\ud83d\ude00","count":0,"meta":["\udfff"]}]}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		body = bytes.ReplaceAll(body, []byte(`"$LATEST"`), []byte(strconv.FormatInt(e.latest(), 10)))
		before := e.state()
		status, raw, d := e.push(body)
		switch {
		case status == http.StatusOK:
			var resp protocol.PushResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				t.Fatalf("200 with body %q: %v", raw, err)
			}
			if !utf8.Valid(body) {
				t.Fatalf("accepted a push that is not valid UTF-8: %q", body)
			}
			if !resp.Duplicate && !resp.Empty {
				e.applied(t, body)
			}
		case status >= 400 && status < 500:
			e.unchanged(before, "refused push")
			dbtest.NoDatabaseText(t, "refused push", d.Message)
		default:
			t.Fatalf("push %q: %d %s", body, status, raw)
		}
	})
}

// FuzzQueryParams fuzzes query strings: protocol.ParseQuery must accept
// exactly what it can encode back, and a signed GET /query must never fail
// on the server's side.
func FuzzQueryParams(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
		f.Fatalf("push: %d %s", status, raw)
	}
	for _, s := range []string{
		"table=lists", "table=lists&eq.name=home", "table=lists&eq.name=%22home%22", "table=todos&eq.done=true&limit=2",
		"table=todos&eq.list_id=1&after=3", "table=notes&eq.id=6d4f0a61-3c56-4ab4-9c39-5a0f1e1c1b3e", "table=notes&eq.tag=null",
		"table=notes&eq.created=2024-01-01T00:00:00Z", "table=notes&eq.meta=%7B%7D", "table=notes&eq.data=AAEC", "table=notes&eq.score=1e400",
		"table=notes&eq.count=2147483648", "table=lists&limit=0", "table=lists&limit=99999999999999999999", "table=lists&after=x",
		"", "table=", "eq.=1", "table=lists&eq.=1", "table=lists&eq.name=%00", "table=notes&eq.created=0000-01-01T00:00:00Z",
		"table=lists%3BDROP%20TABLE%20lists", "table=lists&table=lists", "%zz", "table=lists;x=1", "a=1&a=2", "table=sync_nodes",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if v, err := url.ParseQuery(raw); err == nil {
			req, err := protocol.ParseQuery(v)
			if err == nil {
				if req.Table == "" || req.Limit < 0 || req.Equal == nil {
					t.Fatalf("ParseQuery(%q) = %+v", raw, req)
				}
				again, err := protocol.ParseQuery(req.Values())
				if err != nil || !reflect.DeepEqual(req, again) {
					t.Fatalf("ParseQuery(%q) = %+v; after Values: %+v, %v", raw, req, again, err)
				}
			} else if dbsync.Code(err) != protocol.CodeBadRequest {
				t.Fatalf("ParseQuery(%q): %v (code %s)", raw, err, dbsync.Code(err))
			}
		}
		if !requestLine(raw) {
			return
		}
		e := e.with(t)
		status, body, _ := e.do(e.request(http.MethodGet, "query", raw, nil))
		switch {
		case status == http.StatusOK:
			var resp struct {
				Rows []json.RawMessage `json:"rows"`
				Next string            `json:"next"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || resp.Rows == nil {
				t.Fatalf("query %q: 200 %q (%v)", raw, body, err)
			}
		case status == http.StatusBadRequest:
		default:
			t.Fatalf("query %q: %d %s", raw, status, body)
		}
	})
}

// FuzzSignedHeaders fuzzes the four signature headers of a GET /query or,
// with a body, of a POST /pull (headers checked before the body is read,
// the signature after). The placeholders $NODE, $NOW, $FRESH and $SIGN
// stand for the node's id, the current time, a fresh nonce and the correct
// signature. Only a request signed with the node's secret may be accepted,
// and a valid one must be.
func FuzzSignedHeaders(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, nil)
	for _, s := range [][4]string{
		{"$NODE", "$NOW", "$FRESH", "$SIGN"},
		{"$NODE", "$NOW", "$FRESH", "00"},
		{"$NODE", "$NOW", "0123456789abcdef0123456789abcdef", "$SIGN"},
		{"$NODE", "$NOW", "$FRESH", strings.Repeat("0", 64)},
		{"$NODE", "0", "$FRESH", "$SIGN"},
		{"$NODE", "-9223372036854775808", "$FRESH", "$SIGN"},
		{"$NODE", "9223372036854775807", "$FRESH", "$SIGN"},
		{"$NODE", "$NOW", "ABCDEF0123456789", "$SIGN"},
		{"$NODE", "$NOW", "abc", "$SIGN"},
		{"-1", "$NOW", "$FRESH", "$SIGN"},
		{"0", "$NOW", "$FRESH", "$SIGN"},
		{"99999999999999999999", "$NOW", "$FRESH", "$SIGN"},
		{"1 OR 1=1", "$NOW", "$FRESH", "$SIGN"},
		{"", "", "", ""},
		{"1", "1", "x", "y"},
		{"$NODE", "$NOW", "$FRESH", "zz"},
	} {
		f.Add(s[0], s[1], s[2], s[3], "")
		f.Add(s[0], s[1], s[2], s[3], `{"latest_version_id":0}`)
	}
	f.Add("$NODE", "$NOW", "$FRESH", "$SIGN", strings.Repeat(" ", 1<<20+1))
	f.Add("$NODE", "$NOW", "$FRESH", strings.Repeat("0", 64), strings.Repeat(" ", 1<<20+1))
	f.Add("$NODE", "$NOW", "$FRESH", "$SIGN", "{")
	real := e.node.NodeID
	f.Fuzz(func(t *testing.T, node, ts, nonce, sig, body string) {
		method, endpoint, query := http.MethodGet, "query", "table=lists"
		if body != "" {
			method, endpoint, query = http.MethodPost, "pull", ""
		}
		// Verify never panics and accepts only its own signatures.
		sg := &protocol.Signed{Endpoint: "query", Query: "table=lists", NodeID: real, Timestamp: 1, Nonce: nonce, Body: []byte(sig)}
		if good := sg.Sign(e.node.Secret); !sg.Verify(e.node.Secret, good) || (!strings.EqualFold(sig, good) && sg.Verify(e.node.Secret, sig)) {
			t.Fatalf("Verify is wrong for signature %q", sig)
		}
		fresh := nonce == "$FRESH"
		now := time.Now()
		node = strings.ReplaceAll(node, "$NODE", strconv.FormatInt(real, 10))
		ts = strings.ReplaceAll(ts, "$NOW", strconv.FormatInt(now.UnixMilli(), 10))
		if fresh {
			nonce = protocol.NewNonce()
		}
		nodeID, errN := strconv.ParseInt(node, 10, 64)
		tsMs, errT := strconv.ParseInt(ts, 10, 64)
		// mayPass: correctly signed, within the server's window of 5
		// minutes (give or take the test's own delay); mustPass: well
		// within it.
		mayPass, mustPass := false, false
		if sig == "$SIGN" {
			if errN != nil || errT != nil {
				return
			}
			s := &protocol.Signed{Endpoint: endpoint, Query: query, NodeID: nodeID, Timestamp: tsMs, Nonce: nonce, Body: []byte(body)}
			sig = s.Sign(e.node.Secret)
			skew := now.Sub(time.UnixMilli(tsMs)).Abs()
			ok := nodeID == real && protocol.ValidNonce(nonce)
			mayPass = ok && skew <= 5*time.Minute+time.Minute
			mustPass = ok && skew < 4*time.Minute && fresh
		}
		u := e.url + "/" + endpoint
		if query != "" {
			u += "?" + query
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
		req.Header.Set(protocol.HeaderSchema, e.s.Reg.Fingerprint())
		for k, v := range map[string]string{protocol.HeaderNode: node, protocol.HeaderTimestamp: ts, protocol.HeaderNonce: nonce, protocol.HeaderSignature: sig} {
			if v != strings.TrimSpace(v) {
				return // the server sees the trimmed value
			}
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return // not a valid header value: no client can send it
		}
		defer resp.Body.Close()
		var eb protocol.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		switch {
		case resp.StatusCode == http.StatusOK && !mayPass:
			t.Fatalf("accepted headers %q %q %q %q without a valid signature", node, ts, nonce, sig)
		case resp.StatusCode == http.StatusOK:
		case mayPass && resp.StatusCode == http.StatusBadRequest:
			// A correctly signed pull with a body that is not one.
		case resp.StatusCode == http.StatusRequestEntityTooLarge && len(body) > 1<<20:
			// Too large to be read, hence to check its signature.
		case resp.StatusCode != http.StatusUnauthorized:
			t.Fatalf("headers %q %q %q %q: %d %+v, want 401", node, ts, nonce, sig, resp.StatusCode, eb)
		case mustPass:
			t.Fatalf("refused a valid request: %+v", eb)
		case eb.Error.Code != protocol.CodeUnauthorized && eb.Error.Code != protocol.CodeReplay:
			// Never unknown_node: node ids cannot be probed.
			t.Fatalf("401 with code %q", eb.Error.Code)
		}
	})
}

// applied checks an accepted push: each row it inserts or updates is on the
// server, each row it deletes is not (a push names a row once).
func (e *env) applied(t testing.TB, body []byte) {
	req, err := protocol.DecodePushRequest(body)
	if err != nil {
		t.Fatalf("accepted a push that does not decode: %v", err)
	}
	e.appliedOps(t, string(body), req.Operations)
}

// appliedOps checks the operations of an accepted push (what names it).
func (e *env) appliedOps(t testing.TB, what string, ops []protocol.Operation) {
	for _, op := range ops {
		tb := e.s.Reg.Table(op.Table)
		key, err := tb.CanonicalKey(op.RowID)
		if err != nil {
			t.Fatalf("accepted key %q of %s: %v", op.RowID, op.Table, err)
		}
		arg, _ := tb.ParseKey(key)
		n, err := e.s.DB.NewSelect().Table(op.Table).Where("? = ?", bun.Ident(tb.PK.Name), arg).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (op.Command == models.Delete) != (n == 0) {
			t.Fatalf("accepted push %s left %s %s with %d rows after %q", what, op.Table, key, n, op.Command)
		}
	}
}

// with returns a copy of the env that reports to t.
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}
