package synctest

import (
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// NewTemplateServer is NewServer whose SQLite database starts as a copy of
// ServerSQLite's template for the test models, so that server.New finds
// its tables installed. A PostgreSQL server is set up as by NewServer.
func NewTemplateServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return NewServerWith(t, templateServerDB(t, kind), testmodels.CreateSchema, Models(), cfg)
}

// NewTemplateLocalServer is NewLocalServer on NewTemplateServer's
// databases.
func NewTemplateLocalServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return newServer(t, templateServerDB(t, kind), testmodels.CreateSchema, Models(), cfg)
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

// NewTemplateClient is NewClient on a copy of ClientSQLite's template for
// the test models: client.New finds its tables and triggers installed and
// the node only registers.
func NewTemplateClient(t testing.TB, s *Server, name string, cfg *client.Config) *Client {
	t.Helper()
	db := ClientSQLite(t, "testmodels", testmodels.CreateSchema, Models())
	return NewClientWith(t, s, name, db, testmodels.CreateSchema, Models(), cfg)
}
