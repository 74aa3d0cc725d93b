package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync/migrations"
)

// ExampleMigrate creates dbsync's tables in one call, as python-sync-db's
// create_all() did; a second call does nothing.
func ExampleMigrate() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dbsync-example-migrate-")
	defer os.RemoveAll(dir)
	sqldb, _ := sql.Open(sqliteshim.ShimName, "file:"+filepath.Join(dir, "app.db"))
	db := bun.NewDB(sqldb, sqlitedialect.New())
	defer db.Close()

	for range 2 {
		if err := migrations.Migrate(ctx, db); err != nil {
			panic(err)
		}
	}
	var tables []string
	db.NewRaw("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sync_%' ORDER BY name").Scan(ctx, &tables)
	fmt.Println(tables)
	// Output: [sync_client_owner sync_client_pushed sync_content_types sync_log_floor sync_migration_locks sync_migrations sync_node_activity sync_node_schema sync_node_tables sync_nodes sync_nonces sync_operations sync_push_attempts sync_push_chunks sync_push_keys sync_pushes sync_rebase_floors sync_state sync_version_tokens sync_versions]
}
