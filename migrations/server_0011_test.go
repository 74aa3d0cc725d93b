package migrations_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/migrations"
)

// TestServer0011KeepsLogIndexes: an existing SQLite server database
// upgraded by migrations.Migrate (documented as safe at every start, or
// through migrations.Migrations in the application's own migrator, e.g.
// a deployment step) loses the server's indexes on sync_operations
// (pulls by version, rebase by row): only oplog.Install (server.New)
// creates them again.
func TestServer0011KeepsLogIndexes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
	db := srv.DB
	indexes := func() []string {
		t.Helper()
		var names []string
		if err := db.NewRaw("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sync_operations' AND name NOT LIKE 'sqlite_%' ORDER BY name").Scan(ctx, &names); err != nil {
			t.Fatal(err)
		}
		return names
	}
	before := indexes()
	if len(before) == 0 {
		t.Fatal("server has no log indexes to start with")
	}
	// The database as a release before 0011 left it.
	sub, err := migrations.FS(dialect.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	down, err := fs.ReadFile(sub, "0011_log_order_autoincrement.tx.down.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range strings.Split(string(down), "--bun:split") {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS sync_operations_version_id_idx ON sync_operations (version_id)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS sync_operations_row_idx ON sync_operations (content_type_id, row_id, version_id)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM "+migrations.TableName+" WHERE name = ?", "0011"); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if after := indexes(); len(after) != len(before) {
		t.Fatalf("server log indexes after 0011: %v, before %v", after, before)
	}
}
