package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// exec runs SQL on a database, failing the test on error.
func exec(t *testing.T, db bun.IDB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// count returns the number of rows of a table matching where ("" for all).
func count(t *testing.T, db bun.IDB, table, where string, args ...any) int {
	t.Helper()
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// insertList inserts a list and returns its id.
func insertList(t *testing.T, db bun.IDB, name string) int64 {
	t.Helper()
	l := &testmodels.List{Name: name}
	if _, err := db.NewInsert().Model(l).Exec(context.Background()); err != nil {
		t.Fatalf("insert list %q: %v", name, err)
	}
	return l.ID
}

// insertTodos inserts todos titled prefix-0 … prefix-(n-1) into a list, in
// one statement.
func insertTodos(t *testing.T, db bun.IDB, list int64, prefix string, n int) {
	t.Helper()
	todos := make([]testmodels.Todo, n)
	for i := range todos {
		todos[i] = testmodels.Todo{ListID: list, Title: fmt.Sprintf("%s-%d", prefix, i)}
	}
	if _, err := db.NewInsert().Model(&todos).Exec(context.Background()); err != nil {
		t.Fatalf("insert %d todos: %v", n, err)
	}
}

// titles returns the todo titles of a database, sorted.
func titles(t *testing.T, db bun.IDB) []string {
	t.Helper()
	var out []string
	if err := db.NewSelect().Model((*testmodels.Todo)(nil)).Column("title").Order("title").Scan(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// converged fails the test unless every client holds the server's data.
func converged(t *testing.T, srv *synctest.Server, clients ...*synctest.Client) map[string][]string {
	t.Helper()
	ds := synctest.Dump(t, srv.DB, srv.Reg)
	for _, c := range clients {
		if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), ds); d != "" {
			t.Fatalf("%s and the server differ:\n%s", c.Name, d)
		}
	}
	return ds
}

// state describes everything a node holds: its tracked tables and its sync
// tables (log, versions, push attempts, nodes).
func state(t *testing.T, c *synctest.Client) string {
	t.Helper()
	var b strings.Builder
	d := synctest.Dump(t, c.DB, c.Reg)
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %v\n", n, d[n])
	}
	for _, q := range []string{
		`SELECT "order", content_type_id, row_id, command, version_id FROM sync_operations ORDER BY "order"`,
		`SELECT version_id, node_id FROM sync_versions ORDER BY version_id`,
		`SELECT push_id, max_order, base_version FROM sync_push_attempts ORDER BY push_id`,
		`SELECT node_id, secret FROM sync_nodes ORDER BY node_id`,
	} {
		rows, err := c.DB.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%v\n", vals)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		b.WriteString("--\n")
	}
	return b.String()
}

// endpoint is the procedure a request calls ("push", "pull", …).
func endpoint(r *http.Request) string { return path.Base(r.URL.Path) }

// recorded is one request seen by a recorder.
type recorded struct {
	endpoint string
	header   http.Header
	body     []byte
}

// transport forwards requests to the server through http.DefaultTransport,
// records them, and lets a test inject faults with a hook.
type transport struct {
	mu   sync.Mutex
	reqs []recorded
	// hook, when set, handles the request instead; forward sends it on.
	hook func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error)
}

func (tr *transport) client() *http.Client {
	return &http.Client{Transport: synctest.RoundTripFunc(tr.roundTrip)}
}

func (tr *transport) setHook(h func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error)) {
	tr.mu.Lock()
	tr.hook = h
	tr.mu.Unlock()
}

func (tr *transport) roundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
	}
	tr.mu.Lock()
	tr.reqs = append(tr.reqs, recorded{endpoint: endpoint(r), header: r.Header.Clone(), body: body})
	hook := tr.hook
	tr.mu.Unlock()
	forward := func() (*http.Response, error) {
		r2 := r.Clone(r.Context())
		if body != nil {
			r2.Body = io.NopCloser(bytes.NewReader(body))
			r2.ContentLength = int64(len(body))
		}
		return http.DefaultTransport.RoundTrip(r2)
	}
	if hook != nil {
		return hook(r, body, forward)
	}
	return forward()
}

// requests returns the recorded requests to an endpoint ("" for all).
func (tr *transport) requests(ep string) []recorded {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []recorded
	for _, r := range tr.reqs {
		if ep == "" || r.endpoint == ep {
			out = append(out, r)
		}
	}
	return out
}

// errLostReply is what a hook returns in place of a response.
var errLostReply = fmt.Errorf("injected: connection reset")

// loseReply forwards requests to ep and then drops the response, once per
// call of arm.
func loseReply(ep string) func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
	var mu sync.Mutex
	done := false
	return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		resp, err := forward()
		mu.Lock()
		defer mu.Unlock()
		if err != nil || endpoint(r) != ep || done {
			return resp, err
		}
		done = true
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errLostReply
	}
}

// badSignature sends the requests to ep with a wrong signature: the server
// refuses them 401 unauthorized before it reads their body.
func badSignature(ep string) func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
	return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		if endpoint(r) == ep {
			r.Header.Set(protocol.HeaderSignature, strings.Repeat("0", 64))
		}
		return forward()
	}
}

// failBefore refuses the first request to ep without sending it.
func failBefore(ep string) func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
	var mu sync.Mutex
	done := false
	return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		mu.Lock()
		if endpoint(r) == ep && !done {
			done = true
			mu.Unlock()
			return nil, errLostReply
		}
		mu.Unlock()
		return forward()
	}
}

// errReader fails every read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// truncate forwards requests and cuts the response body of the first
// request to ep at frac of its length: it then ends cleanly (clean true) or
// with io.ErrUnexpectedEOF.
func truncate(ep string, frac float64, clean bool) func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
	var mu sync.Mutex
	done := false
	return func(r *http.Request, body []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		resp, err := forward()
		mu.Lock()
		defer mu.Unlock()
		if err != nil || endpoint(r) != ep || done || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		done = true
		full, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		n := int(float64(len(full)) * frac)
		var rd io.Reader = bytes.NewReader(full[:n])
		if !clean {
			rd = io.MultiReader(rd, errReader{io.ErrUnexpectedEOF})
		}
		resp.Body = io.NopCloser(rd)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		return resp, nil
	}
}

// hookTransport runs onPush and onPull (when set) as the node's push and
// pull requests are sent, on the test's in-process transport.
type hookTransport struct {
	*synctest.Transport
	onPush, onPull func()
}

func (tr *hookTransport) Push(ctx context.Context, call *client.Call, body []byte) (*protocol.PushResponse, error) {
	if tr.onPush != nil {
		tr.onPush()
	}
	return tr.Transport.Push(ctx, call, body)
}

func (tr *hookTransport) Pull(ctx context.Context, call *client.Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	if tr.onPull != nil {
		tr.onPull()
	}
	return tr.Transport.Pull(ctx, call, req)
}
