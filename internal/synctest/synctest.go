// Package synctest runs dbsync end to end for tests: a server (SQLite or
// PostgreSQL) behind the chi handlers on a real loopback HTTP listener, or
// called in process (NewLocalServer, Transport), and client nodes on their
// own SQLite files. Only tests import it.
package synctest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// Server is a dbsync server on a loopback listener, or without one
// (NewLocalServer).
type Server struct {
	DB   *bun.DB
	Reg  *dbsync.Registry // the registry in use (Registry()), catalog constraints included
	Srv  *server.Server
	HTTP *httptest.Server // nil for a local server
	// URL is where the handlers are mounted ("" for a local server).
	URL string
}

// Models returns the models the harness tracks; override per test with
// NewServerWith / NewClientWith.
func Models() []any { return testmodels.All() }

// OpenConfig returns a copy of cfg (nil: the defaults) that lets anyone
// register (server.OpenRegistration) unless it sets AuthorizeRegister.
func OpenConfig(cfg *server.Config) *server.Config {
	c := server.Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.AuthorizeRegister == nil {
		c.AuthorizeRegister = server.OpenRegistration
	}
	return &c
}

// OpenHandlers returns the handlers' configuration of test servers: tests
// register many nodes from one address, so registrations are not
// rate-bounded.
func OpenHandlers() *handlers.Config {
	return &handlers.Config{Registration: handlers.RateLimit{Every: -1}}
}

// NewServer starts a server on a fresh database of kind with the test
// models. A SQLite file starts as a copy of ServerSQLite's template for
// them, so that server.New finds its tables installed.
func NewServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return NewServerWith(t, templateServerDB(t, kind), testmodels.CreateSchema, Models(), cfg)
}

// NewServerWith starts a server on db, after creating the schema.
func NewServerWith(t testing.TB, db *bun.DB, schema func(context.Context, bun.IDB) error, models []any, cfg *server.Config) *Server {
	t.Helper()
	s := newServer(t, db, schema, models, cfg)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(s.Srv, OpenHandlers()))
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	// Before hs.Close, which waits for the requests it serves: held
	// watch requests are answered at once.
	t.Cleanup(func() { _ = s.Srv.Close() })
	s.HTTP, s.URL = hs, hs.URL+"/sync"
	return s
}

// newServer creates the schema on db and a server on it, without HTTP.
func newServer(t testing.TB, db *bun.DB, schema func(context.Context, bun.IDB) error, models []any, cfg *server.Config) *Server {
	t.Helper()
	ctx := context.Background()
	if err := schema(ctx, db); err != nil {
		t.Fatal(err)
	}
	srv := newSrv(t, db, models, cfg)
	return &Server{DB: db, Reg: srv.Registry(), Srv: srv}
}

// NewHandler creates a server for models on db, whose tables exist, and
// returns it with a chi router that mounts its handlers on /sync, for
// tests that serve it themselves.
func NewHandler(t testing.TB, db *bun.DB, models []any, cfg *server.Config) (*server.Server, http.Handler) {
	t.Helper()
	srv := newSrv(t, db, models, cfg)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, OpenHandlers()))
	return srv, r
}

// newSrv tracks models on db, whose tables exist, and creates a server.
func newSrv(t testing.TB, db *bun.DB, models []any, cfg *server.Config) *server.Server {
	t.Helper()
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), db, reg, OpenConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// Stops the change feed's listener before db closes.
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// Client is a registered node on its own SQLite file.
type Client struct {
	Name string
	DB   *bun.DB
	Reg  *dbsync.Registry // the registry in use (Registry()), catalog constraints included
	*client.Client
}

// NewClient creates and registers a node of s with the test models. It
// reaches s over HTTP, or through an in-process Transport when s is a local
// server, unless cfg sets URL or Transport (then s may be nil). Its SQLite
// file is a copy of ClientSQLite's template for the test models: client.New
// finds its tables and triggers installed, and the node only registers.
func NewClient(t testing.TB, s *Server, name string, cfg *client.Config) *Client {
	t.Helper()
	db := ClientSQLite(t, "testmodels", testmodels.CreateSchema, Models())
	return NewClientWith(t, s, name, db, testmodels.CreateSchema, Models(), cfg)
}

// NewClientWith creates and registers a node on db, reaching s as NewClient
// does.
func NewClientWith(t testing.TB, s *Server, name string, db *bun.DB, schema func(context.Context, bun.IDB) error, models []any, cfg *client.Config) *Client {
	t.Helper()
	return NewClientAs(t, s, name, "", db, schema, models, cfg)
}

// NewClientAs is NewClientWith registering with credentials (the
// Authorization header of the register request, e.g. "Bearer …").
func NewClientAs(t testing.TB, s *Server, name, credentials string, db *bun.DB, schema func(context.Context, bun.IDB) error, models []any, cfg *client.Config) *Client {
	t.Helper()
	ctx := context.Background()
	if err := schema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	c := client.Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.URL == "" && c.Transport == nil {
		if s.HTTP == nil {
			c.Transport = NewTransport(s.Srv)
		} else {
			c.URL = s.URL
		}
	}
	cl, err := client.New(ctx, db, reg, &c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RegisterWith(ctx, &client.RegisterOptions{Credentials: credentials}); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return &Client{Name: name, DB: db, Reg: cl.Registry(), Client: cl}
}

// ClientSQLite returns a fresh SQLite file holding the tables of schema
// and what client.New installs for models (dbsync's tables, capture
// triggers), copied from a template built once per test binary and key:
// NewClientWith on it then only registers. key names schema and models.
func ClientSQLite(t testing.TB, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	return dbtest.SQLiteFrom(t, "synctest.client/"+key, clientInit(schema, models))
}

// clientInit installs schema's tables and a client of models.
func clientInit(schema func(context.Context, bun.IDB) error, models []any) func(context.Context, *bun.DB) error {
	return func(ctx context.Context, db *bun.DB) error {
		if err := schema(ctx, db); err != nil {
			return err
		}
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			return err
		}
		_, err = client.New(ctx, db, reg, &client.Config{URL: "http://template.invalid/sync"})
		return err
	}
}

// ServerSQLite is ClientSQLite for a server: the tables of schema and what
// server.New installs for models.
func ServerSQLite(t testing.TB, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	return dbtest.SQLiteFrom(t, "synctest.server/"+key, serverInit(schema, models))
}

// serverInit installs schema's tables and a server of models.
func serverInit(schema func(context.Context, bun.IDB) error, models []any) func(context.Context, *bun.DB) error {
	return func(ctx context.Context, db *bun.DB) error {
		if err := schema(ctx, db); err != nil {
			return err
		}
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			return err
		}
		_, err = server.New(ctx, db, reg, OpenConfig(nil))
		return err
	}
}

// Dump returns every row of every tracked table of db as canonical JSON
// lines, sorted: two databases hold the same data when their dumps are
// equal.
func Dump(t testing.TB, db bun.IDB, reg *dbsync.Registry) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range reg.Tables() {
		var rows []string
		err := store.Scan(context.Background(), db, tb, 1000, func(vals []reflect.Value) error {
			for _, v := range vals {
				raw, err := tb.Codec().AppendRow(nil, v)
				if err != nil {
					return err
				}
				rows = append(rows, normalize(string(raw)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(rows)
		out[tb.Name] = rows
	}
	return out
}

// normalize removes representation differences between databases that
// hold the same value (time zone notation).
func normalize(s string) string { return strings.ReplaceAll(s, "+00:00\"", "Z\"") }

// Diff describes how two dumps differ ("" when equal).
func Diff(a, b map[string][]string) string {
	var out []string
	for table, rows := range a {
		other := b[table]
		if !reflect.DeepEqual(rows, other) {
			out = append(out, fmt.Sprintf("%s:\n  %v\n  %v", table, rows, other))
		}
	}
	for table := range b {
		if _, ok := a[table]; !ok {
			out = append(out, "missing table "+table)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// RoundTripFunc adapts a function to http.RoundTripper, for fault
// injection.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip implements http.RoundTripper.
func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
