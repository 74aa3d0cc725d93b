package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/oplog"
)

// rebuildTodos rebuilds the todos table the way SQLite's documentation
// says to change a table it cannot ALTER: a new table, the rows copied,
// the old table dropped, the new one renamed (the capture triggers go with
// the old table, on both dialects). The new table adds a CHECK and a
// unique index.
func rebuildTodos(ctx context.Context, db bun.IDB, kind string) error {
	create := `CREATE TABLE todos_new (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		list_id INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
		title VARCHAR NOT NULL CHECK (length(title) < 1000),
		done BOOLEAN NOT NULL DEFAULT false)`
	if kind == dbtest.KindPostgres {
		create = `CREATE TABLE todos_new (
			id BIGSERIAL PRIMARY KEY,
			list_id BIGINT NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
			title VARCHAR NOT NULL CHECK (length(title) < 1000),
			done BOOLEAN NOT NULL DEFAULT false)`
	}
	seq := `SELECT 1`
	if kind == dbtest.KindPostgres {
		seq = `SELECT setval(pg_get_serial_sequence('todos_new', 'id'), (SELECT max(id) FROM todos_new))`
	}
	for _, q := range []string{
		create,
		`INSERT INTO todos_new (id, list_id, title, done) SELECT id, list_id, title, done FROM todos`,
		seq,
		`DROP TABLE todos`,
		`ALTER TABLE todos_new RENAME TO todos`,
		`CREATE UNIQUE INDEX todos_title_per_list ON todos (list_id, title)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// The capture follows a table a migration rebuilt: through Client.Migrate
// the triggers are back in the migration's transaction (and the Guard
// lets its DROP TABLE through), the catalog's new unique index reaches the
// registry, a failed migration changes nothing; a rebuild behind the
// client's back is noticed and repaired by the next push.
func TestMigrateRebuild(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
			raw := dbtest.Open(t, kind)
			reg, err := dbsync.Track(raw, testmodels.All()...)
			if err != nil {
				t.Fatal(err)
			}
			db := raw.WithQueryHook(oplog.NewGuard(reg, nil))
			c := synctest.NewClientWith(t, srv, "a", db, testmodels.CreateSchema, synctest.Models(), nil)
			list := insertList(t, db, "home")
			insertTodos(t, db, list, "before", 2)
			if _, err := c.Push(ctx); err != nil {
				t.Fatal(err)
			}

			// Outside Migrate the Guard refuses the rebuild.
			err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				return rebuildTodos(ctx, tx, kind)
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("a rebuild outside Migrate through the Guard = %v, want it refused", err)
			}

			// A failed migration rolls back whole: triggers stay.
			boom := errors.New("boom")
			err = c.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error {
				if err := rebuildTodos(ctx, tx, kind); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Migrate = %v, want the migration's error", err)
			}
			if err := oplog.Check(ctx, db, c.Registry(), true); err != nil {
				t.Fatalf("after a failed migration: %v", err)
			}

			if err := c.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error {
				return rebuildTodos(ctx, tx, kind)
			}); err != nil {
				t.Fatal(err)
			}
			if err := oplog.Check(ctx, db, c.Registry(), true); err != nil {
				t.Fatalf("after Migrate: %v", err)
			}
			if !slices.ContainsFunc(c.Registry().Table("todos").Uniques, func(u []string) bool {
				return slices.Equal(u, []string{"list_id", "title"})
			}) {
				t.Errorf("todos uniques after Migrate = %v, want the new index (list_id, title)", c.Registry().Table("todos").Uniques)
			}
			pending, err := c.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 0 {
				t.Fatalf("the rebuild logged %d operations, want none", len(pending))
			}
			// A write right after is captured and reaches the server.
			insertTodos(t, db, list, "after", 1)
			if _, err := c.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(t, srv.DB, "todos", "title LIKE ?", "after%"); n != 1 {
				t.Fatalf("server holds %d rows written after the migration, want 1", n)
			}

			// A rebuild behind the client's back (no Guard) loses the
			// triggers; the next push notices and re-installs them.
			if err := rebuildTodos(ctx, raw, kind); err == nil {
				exec(t, raw, "DROP INDEX todos_title_per_list")
			}
			if err := oplog.Check(ctx, raw, c.Registry(), true); !errors.Is(err, oplog.ErrCaptureMissing) {
				t.Fatalf("Check after an unguarded rebuild = %v, want ErrCaptureMissing", err)
			}
			if _, err := c.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if err := oplog.Check(ctx, raw, c.Registry(), true); err != nil {
				t.Fatalf("after the push: %v", err)
			}
			insertTodos(t, db, list, "later", 1)
			if _, err := c.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(t, srv.DB, "todos", "title LIKE ?", "later%"); n != 1 {
				t.Fatalf("server holds %d rows written after the re-install, want 1", n)
			}
		})
	}
}

func TestMigrateNil(t *testing.T) {
	t.Parallel()
	srv := synctest.NewLocalServer(t, dbtest.KindSQLite, nil)
	c := synctest.NewClient(t, srv, "a", &client.Config{})
	if err := c.Migrate(context.Background(), nil); err == nil {
		t.Fatal("Migrate(nil) succeeded")
	}
}
