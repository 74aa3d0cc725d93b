package synctest

import (
	"context"
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
	if kind == dbtest.KindSQLite {
		return ServerSQLite(t, "testmodels", testmodels.CreateSchema, Models())
	}
	return dbtest.Open(t, kind)
}

// NewTemplateClient is NewClient (on a copy of a template), under its
// older name.
func NewTemplateClient(t testing.TB, s *Server, name string, cfg *client.Config) *Client {
	t.Helper()
	return NewClient(t, s, name, cfg)
}

// ServerDB opens a fresh database of kind for a server of models: a SQLite
// file from ServerSQLite's template for key (a name that stands for schema
// and models), or an empty PostgreSQL schema. NewServerWith then creates
// schema's tables where they are missing and starts the server.
func ServerDB(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	if kind == dbtest.KindSQLite {
		return ServerSQLite(t, key, schema, models)
	}
	return dbtest.Open(t, kind)
}

// ClientDB is ServerDB for a client node: a SQLite file from
// ClientSQLite's template for key, or an empty PostgreSQL schema.
func ClientDB(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error, models []any) *bun.DB {
	t.Helper()
	if kind == dbtest.KindSQLite {
		return ClientSQLite(t, key, schema, models)
	}
	return dbtest.Open(t, kind)
}
