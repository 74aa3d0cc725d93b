package synctest

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// NewTemplateServer is NewServer (whose SQLite database is a copy of a
// template), under the name the tests used before NewServer was.
func NewTemplateServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return NewServer(t, kind, cfg)
}

// NewTemplateLocalServer is NewLocalServer, under its older name.
func NewTemplateLocalServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return NewLocalServer(t, kind, cfg)
}

// templateServerDB opens a fresh database of kind for a server of the test
// models: a SQLite file from ServerSQLite's template.
func templateServerDB(t testing.TB, kind string) *bun.DB {
	t.Helper()
	return ServerDB(t, kind, "testmodels", testmodels.CreateSchema, Models())
}

// NewTemplateClient is NewClient (on a copy of a template), under its
// older name.
func NewTemplateClient(t testing.TB, s *Server, name string, cfg *client.Config) *Client {
	t.Helper()
	return NewClient(t, s, name, cfg)
}

// ServerDB opens a fresh database of kind for a server of models, holding
// schema's tables and what server.New installs: a SQLite file from
// ServerSQLite's template for key (a name that stands for schema and
// models), or a PostgreSQL schema from dbtest.PostgresFrom. NewServerWith
// on it then finds everything in place and starts the server.
func ServerDB(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	return templateDB(t, kind, "synctest.server/"+key, serverInit(schema, models))
}

// ClientDB is ServerDB for a client node: what client.New installs.
func ClientDB(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	return templateDB(t, kind, "synctest.client/"+key, clientInit(schema, models))
}

// templateDB opens a fresh database of kind holding what init installs,
// which runs once per test binary and key: on SQLite a copy of a template
// file (dbtest.SQLiteFrom), on PostgreSQL a schema earlier tests of key
// gave back (dbtest.PostgresFrom).
func templateDB(t testing.TB, kind, key string, init func(context.Context, *bun.DB) error) *bun.DB {
	t.Helper()
	switch kind {
	case dbtest.KindSQLite:
		return dbtest.SQLiteFrom(t, key, init)
	case dbtest.KindPostgres:
		return dbtest.PostgresFrom(t, key, init)
	}
	t.Fatalf("unknown database kind %q", kind)
	return nil
}

// ServerOn opens a fresh database of kind for a server of models whose
// tables schema creates: a copy of ServerDB's template when schema is a
// named function (SchemaKey), else an empty database (dbtest.Open), on
// which NewServerWith installs everything. A template costs an install
// and a copy per test binary and key: it pays for a schema several tests
// use (on PostgreSQL an install is about 150 ms of DDL), not for one used
// once.
func ServerOn(t testing.TB, kind string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	if key, ok := SchemaKey(schema, models); ok {
		return ServerDB(t, kind, key, schema, models)
	}
	return dbtest.Open(t, kind)
}

// ClientOn is ServerOn for a client node (ClientDB).
func ClientOn(t testing.TB, kind string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	if key, ok := SchemaKey(schema, models); ok {
		return ClientDB(t, kind, key, schema, models)
	}
	return dbtest.Open(t, kind)
}

// SchemaKey names a template of schema's tables tracked as models: the
// function's name and the models' types. Only a named function has one:
// a closure or a method value may create other tables at each call
// (synctest.CreateTables' do), so the caller names those itself
// (ServerDB, ClientDB).
func SchemaKey(schema func(context.Context, bun.IDB) error, models []any) (string, bool) {
	fn := runtime.FuncForPC(reflect.ValueOf(schema).Pointer())
	if fn == nil {
		return "", false
	}
	name := fn.Name()
	if strings.Contains(name, ".func") || strings.HasSuffix(name, "-fm") {
		return "", false
	}
	return name + typesKey(models), true
}

// TablesServerDB is ServerDB for the tables of models (CreateTables),
// keyed by the models' types.
func TablesServerDB(t testing.TB, kind string, models []any) *bun.DB {
	t.Helper()
	return ServerDB(t, kind, tablesKey(models), CreateTables(models...), models)
}

// TablesClientDB is TablesServerDB for a client node (ClientDB).
func TablesClientDB(t testing.TB, kind string, models []any) *bun.DB {
	t.Helper()
	return ClientDB(t, kind, tablesKey(models), CreateTables(models...), models)
}

// tablesKey names CreateTables(models...) and models.
func tablesKey(models []any) string {
	return "CreateTables" + typesKey(models)
}

// typesKey lists the models' types.
func typesKey(models []any) string {
	var b strings.Builder
	for _, m := range models {
		fmt.Fprintf(&b, "|%T", m)
	}
	return b.String()
}
