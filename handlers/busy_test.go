package handlers_test

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// While another writer holds a SQLite server's write lock past the busy
// timeout (a long push or commit, an application's transaction), a
// request that must write (its nonce, at least) is answered 503 busy
// with Retry-After, as when a budget is in use, and writes nothing; once
// the lock is released it goes through. Before, it was 500 internal.
func TestSQLiteLockedIsBusy(t *testing.T) {
	t.Parallel()
	// A busy timeout short enough for a test.
	dsn := strings.Replace(dbtest.SQLiteDSN(filepath.Join(t.TempDir(), "server.db")), "busy_timeout(20000)", "busy_timeout(100)", 1)
	sqldb, err := sql.Open(sqliteshim.ShimName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	s := synctest.NewServerWith(t, db, testmodels.CreateSchema, testmodels.All(), nil)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(s.Srv, nil))
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	e := &env{t: t, s: s, url: hs.URL + "/sync"}
	status, raw := e.register(`{}`)
	var rr protocol.RegisterResponse
	if err := json.Unmarshal(raw, &rr); status != http.StatusOK || err != nil {
		t.Fatalf("register: %d %s", status, raw)
	}
	e.node = rr.Node

	cases := []struct {
		name string
		req  func() *http.Request
	}{
		{"query", func() *http.Request { return e.request(http.MethodGet, "query", "table=lists", nil) }},
		{"push", func() *http.Request { return e.request(http.MethodPost, "push", "", e.pushBody(1, "home")) }},
		{"pull", func() *http.Request {
			return e.request(http.MethodPost, "pull", "", []byte(`{"latest_version_id":0}`))
		}},
	}
	// Another connection holds the write lock.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sync_state SET id = id WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		resp, err := http.DefaultClient.Do(c.req())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var eb protocol.ErrorBody
		_ = json.Unmarshal(body, &eb)
		if resp.StatusCode != http.StatusServiceUnavailable || eb.Error.Code != protocol.CodeBusy || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s while the database is locked: %d %s (Retry-After %q), want 503 busy with Retry-After",
				c.name, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if st := e.state(); st.Versions != 0 || st.Pushes != 0 {
		t.Fatalf("the refused requests wrote: %d versions, %d pushes", st.Versions, st.Pushes)
	}
	for _, c := range cases {
		if status, raw, _ := e.do(c.req()); status != http.StatusOK {
			t.Errorf("%s once the lock is released: %d %s", c.name, status, raw)
		}
	}
}
