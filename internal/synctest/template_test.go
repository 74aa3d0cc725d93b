package synctest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

type schemaMaker struct{ table string }

func (m schemaMaker) create(ctx context.Context, db bun.IDB) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+m.table+" (id BIGINT PRIMARY KEY)")
	return err
}

// SchemaKey names only a named function's tables: a closure or a method
// value may create other tables at each call, and keys differ by models.
func TestSchemaKey(t *testing.T) {
	t.Parallel()
	lists := []any{(*testmodels.List)(nil)}
	todos := []any{(*testmodels.List)(nil), (*testmodels.Todo)(nil)}
	for _, c := range []struct {
		name   string
		schema func(context.Context, bun.IDB) error
		models []any
		want   string // "" for none
	}{
		{"named function", testmodels.CreateSchema, lists, "testmodels.CreateSchema|*testmodels.List"},
		{"named function, other models", testmodels.CreateSchema, todos, "testmodels.CreateSchema|*testmodels.List|*testmodels.Todo"},
		{"CreateTables closure", synctest.CreateTables(lists...), lists, ""},
		{"literal closure", func(context.Context, bun.IDB) error { return nil }, lists, ""},
		{"method value", schemaMaker{"a"}.create, lists, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, ok := synctest.SchemaKey(c.schema, c.models)
			if ok != (c.want != "") || !strings.HasSuffix(key, c.want) {
				t.Errorf("SchemaKey = %q, %v; want a key ending %q (%v)", key, ok, c.want, c.want != "")
			}
		})
	}
}

// ServerOn gives a named schema's server a database with dbsync
// installed (a template's copy) and a closure's an empty one, on both
// databases.
func TestServerOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			installed := func(db *bun.DB) bool {
				var n int
				if err := db.NewRaw("SELECT COUNT(*) FROM sync_versions").Scan(ctx, &n); err != nil {
					return false
				}
				return true
			}
			models := synctest.Models()
			if db := synctest.ServerOn(t, kind, testmodels.CreateSchema, models); !installed(db) {
				t.Errorf("ServerOn(CreateSchema): dbsync not installed")
			}
			if db := synctest.ServerOn(t, kind, synctest.CreateTables(models...), models); installed(db) {
				t.Errorf("ServerOn(closure): dbsync installed, want an empty database")
			}
			s := synctest.NewServerWith(t, synctest.TablesServerDB(t, kind, models), synctest.CreateTables(models...), models, nil)
			c := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, dbtest.KindSQLite, models), synctest.CreateTables(models...), models, nil)
			if _, err := c.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
