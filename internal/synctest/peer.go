package synctest

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// NewNode opens a fresh database of kind with the tables of the test
// models and makes it a peer node.
func NewNode(t testing.TB, kind string, cfg *peer.Config) *peer.Node {
	t.Helper()
	return NewTemplateNode(t, kind, "testmodels", testmodels.CreateSchema, Models(), cfg)
}

// NewTemplateNode makes a fresh database of kind holding the tables schema
// creates a peer node tracking models. A SQLite file is a copy of a
// template built once per test binary and key (a name that stands for
// schema and models) on which peer.New installed everything for models
// (the peer's tables, identity columns, capture triggers) before its node
// row was removed: peer.New on the copy finds it all in place and only
// gives the node its own identity. A PostgreSQL schema is the same,
// given back by an earlier test of key (dbtest.PostgresFrom).
func NewTemplateNode(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error, models []any, cfg *peer.Config) *peer.Node {
	t.Helper()
	db := templateDB(t, kind, "synctest.node/"+key, func(ctx context.Context, db *bun.DB) error {
		if err := schema(ctx, db); err != nil {
			return err
		}
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			return err
		}
		if _, err := peer.New(ctx, db, reg, nil); err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, "DELETE FROM sync_lww_node")
		return err
	})
	return NewNodeWith(t, keepConns(db), models, cfg)
}

// keepConns keeps the connections a SQLite node opened (database/sql
// closes all but two idle ones): each new connection parses the whole
// schema, capture triggers included, which under the race detector costs
// more than most statements.
func keepConns(db *bun.DB) *bun.DB {
	db.SetMaxIdleConns(16)
	return db
}

// NodeDB opens a fresh database of kind, closed at cleanup, holding the
// tables schema creates and the peer's own (peer.Migrate), installed once
// per test binary and key (a name that stands for schema): templateDB.
// peer.New then only installs the node.
func NodeDB(t testing.TB, kind, key string, schema func(context.Context, bun.IDB) error) *bun.DB {
	t.Helper()
	return keepConns(templateDB(t, kind, "synctest.peer/"+key, func(ctx context.Context, db *bun.DB) error {
		if err := schema(ctx, db); err != nil {
			return err
		}
		return peer.Migrate(ctx, db)
	}))
}

// NewNodeWith makes db, whose tables exist, a peer node tracking models.
func NewNodeWith(t testing.TB, db *bun.DB, models []any, cfg *peer.Config) *peer.Node {
	t.Helper()
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	n, err := peer.New(context.Background(), db, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// CreateTables returns a schema function (for NodeDB) that creates the
// models' tables with their foreign keys, when they do not exist.
func CreateTables(models ...any) func(context.Context, bun.IDB) error {
	return func(ctx context.Context, db bun.IDB) error {
		for _, m := range models {
			if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}
