package migrations_test

import (
	"context"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/migrations"
	"github.com/go-dbsync/dbsync/models"
)

// syncTables are the tables of package models, and the server's staged
// push chunks and their keys, rebase floors, the log's lifecycle
// (node activity, log floor), a node's announced schema, the versions'
// tokens, and a node's tables (pulled, scoped).
var syncTables = []string{
	"sync_content_types", "sync_nodes", "sync_versions", "sync_operations",
	"sync_pushes", "sync_push_attempts", "sync_nonces", "sync_state",
	"sync_push_chunks", "sync_push_keys", "sync_rebase_floors",
	"sync_node_activity", "sync_log_floor", "sync_node_schema", "sync_version_tokens",
	"sync_node_tables",
}

// each runs fn as a parallel subtest on a fresh database of every kind.
func each(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fn(t, dbtest.Open(t, kind))
		})
	}
}

// tableExists asks the database catalog whether a table exists.
func tableExists(t *testing.T, db bun.IDB, table string) bool {
	t.Helper()
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.Dialect().Name() == dialect.PG {
		q = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
	}
	var n int
	if err := db.QueryRowContext(t.Context(), q, table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func migrate1(t *testing.T, db *bun.DB) {
	t.Helper()
	if err := migrations.Migrate(t.Context(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

// utc rewrites every time.Time field of a struct to UTC, as each database
// returns times in its own location.
func utc(ptr any) {
	v := reflect.ValueOf(ptr).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == reflect.TypeFor[time.Time]() {
			f.Set(reflect.ValueOf(f.Interface().(time.Time).UTC()))
		}
	}
}

// checkModels writes one row of every model of package models and reads it
// back with bun, which fails when a column is missing or has the wrong type.
func checkModels(t *testing.T, db bun.IDB) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	node, version, user := int64(3), int64(5), "u"
	rows := []any{
		&models.ContentType{ContentTypeID: 4294967295, TableName: "todos", ModelName: "Todo"},
		&models.Node{NodeID: 3, Registered: now, RegistryUserID: &user, Secret: "s"},
		&models.Version{VersionID: version, NodeID: &node, Created: now},
		&models.VersionToken{VersionID: version, Token: "4IQMNDTC2ZQYJCO2PH7OGQ2PFB"},
		&models.Operation{Order: 7, RowID: "6f9619ff-8b86-d011-b42d-00c04fc964ff", ContentTypeID: 4294967295, Command: models.Delete, VersionID: &version},
		&models.Push{PushID: "p", NodeID: node, VersionID: &version, Created: now},
		&models.PushAttempt{PushID: "p", MaxOrder: 1 << 40, BaseVersion: &version, Created: now},
		&models.Nonce{NodeID: node, Nonce: "n", Seen: now},
	}
	for _, row := range rows {
		if _, err := db.NewInsert().Model(row).Exec(ctx); err != nil {
			t.Fatalf("insert %T: %v", row, err)
		}
		got := reflect.New(reflect.TypeOf(row).Elem()).Interface()
		if err := db.NewSelect().Model(got).Scan(ctx); err != nil {
			t.Fatalf("select %T: %v", row, err)
		}
		utc(got)
		if !reflect.DeepEqual(got, row) {
			t.Fatalf("read back %+v, want %+v", got, row)
		}
	}
	var state []models.State
	if err := db.NewSelect().Model(&state).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(state) != 1 || state[0] != (models.State{ID: 1, Capture: true}) {
		t.Fatalf("sync_state holds %+v, want the single row {1 true nil}", state)
	}
	// The constraints are there. (SQLite's log has no CHECK on the command:
	// it would be compiled into every tracked write; dbsync alone writes it.)
	if db.Dialect().Name() != dialect.SQLite {
		if _, err := db.NewInsert().Model(&models.Operation{RowID: "1", ContentTypeID: 1, Command: "x"}).Exec(ctx); err == nil {
			t.Fatal("sync_operations accepted command x")
		}
	}
	if _, err := db.NewInsert().Model(&models.State{ID: 2, Capture: true}).Exec(ctx); err == nil {
		t.Fatal("sync_state accepted a second row")
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		migrate1(t, db)
		for _, table := range append(slices.Clone(syncTables), migrations.TableName, migrations.LocksTableName) {
			if !tableExists(t, db, table) {
				t.Errorf("table %s missing after Migrate", table)
			}
		}
		if tableExists(t, db, "bun_migrations") {
			t.Error("Migrate created bun_migrations")
		}
		checkModels(t, db)
		if db.Dialect().Name() == dialect.PG {
			// 0008: staged chunk bodies are compressed with lz4, or
			// stored uncompressed by a server built without it.
			var compression, storage string
			if err := db.QueryRowContext(ctx, `SELECT attcompression::text, attstorage::text FROM pg_attribute
WHERE attrelid = 'sync_push_chunks'::regclass AND attname = 'body'`).Scan(&compression, &storage); err != nil {
				t.Fatal(err)
			}
			if compression != "l" && storage != "e" {
				t.Errorf("sync_push_chunks.body compression %q, storage %q; want lz4 (l) or external storage (e)", compression, storage)
			}
		}

		// A second Migrate applies nothing and keeps the data.
		applied := func() []string {
			var names []string
			if err := db.NewSelect().Table(migrations.TableName).Column("name").Order("name").Scan(ctx, &names); err != nil {
				t.Fatal(err)
			}
			return names
		}
		before := applied()
		if len(before) == 0 {
			t.Fatalf("%s is empty after Migrate", migrations.TableName)
		}
		migrate1(t, db)
		if after := applied(); !slices.Equal(after, before) {
			t.Fatalf("applied migrations %q after a second Migrate, want %q", after, before)
		}
		for _, m := range []any{(*models.ContentType)(nil), (*models.Operation)(nil), (*models.Nonce)(nil)} {
			if n, err := db.NewSelect().Model(m).Count(ctx); err != nil || n != 1 {
				t.Fatalf("%T: %d rows (%v) after a second Migrate, want 1", m, n, err)
			}
		}
	})
}

// TestMigrateConcurrent runs Migrate from four handles on one new database
// at once, as four processes starting together would.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// A few rounds, as the race is not always lost.
			for range 3 {
				migrateConcurrently(t, kind)
			}
		})
	}
}

// migrateConcurrently opens four handles on one new database and runs
// Migrate on all of them at once.
func migrateConcurrently(t *testing.T, kind string) {
	t.Helper()
	var open func() (*bun.DB, error)
	switch kind {
	case dbtest.KindSQLite:
		path := dbtest.SQLitePath(t)
		open = func() (*bun.DB, error) { return dbtest.OpenSQLite(path) }
	case dbtest.KindPostgres:
		url := dbtest.PostgresSchemaURL(t)
		open = func() (*bun.DB, error) { return dbtest.OpenPostgres(url) }
	}
	const n = 4
	dbs := make([]*bun.DB, n)
	for i := range dbs {
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		dbs[i] = db
	}
	errs := make(chan error, n)
	start := make(chan struct{})
	for _, db := range dbs {
		go func() {
			<-start
			errs <- migrations.Migrate(t.Context(), db)
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	db := dbs[0]
	var names []string
	if err := db.NewSelect().Table(migrations.TableName).Column("name").Scan(t.Context(), &names); err != nil {
		t.Fatal(err)
	}
	ms, err := migrations.Migrations(db.Dialect().Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(ms.Sorted()) {
		t.Fatalf("%s holds %q, want each of the %d migrations once", migrations.TableName, names, len(ms.Sorted()))
	}
	checkModels(t, db)
}

func TestDropAll(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		migrate1(t, db)
		if _, err := db.NewInsert().Model(&models.ContentType{ContentTypeID: 1, TableName: "t", ModelName: "T"}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if err := migrations.DropAll(ctx, db); err != nil {
			t.Fatalf("DropAll: %v", err)
		}
		for _, table := range append(slices.Clone(syncTables), migrations.TableName, migrations.LocksTableName) {
			if tableExists(t, db, table) {
				t.Errorf("table %s still exists after DropAll", table)
			}
		}
		// Dropping nothing is fine.
		if err := migrations.DropAll(ctx, db); err != nil {
			t.Fatalf("second DropAll: %v", err)
		}
		// Migrate starts over.
		migrate1(t, db)
		checkModels(t, db)
	})
}

// TestDialectParity checks that both dialect directories hold the same
// migrations, each with an up and a down file.
func TestDialectParity(t *testing.T) {
	t.Parallel()
	files := func(name dialect.Name) []string {
		fsys, err := migrations.FS(name)
		if err != nil {
			t.Fatal(err)
		}
		names, err := fs.Glob(fsys, "*")
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	sqlite, pg := files(dialect.SQLite), files(dialect.PG)
	if len(sqlite) == 0 {
		t.Fatal("no sqlite migrations")
	}
	if !slices.Equal(sqlite, pg) {
		t.Fatalf("sqlite migrations %q, postgres %q", sqlite, pg)
	}
	for _, f := range sqlite {
		base, ok := strings.CutSuffix(f, ".up.sql")
		if !ok {
			if _, ok := strings.CutSuffix(f, ".down.sql"); !ok {
				t.Errorf("%s is neither an up nor a down migration", f)
			}
			continue
		}
		if !slices.Contains(sqlite, base+".down.sql") {
			t.Errorf("%s has no down migration", f)
		}
	}
	names := func(name dialect.Name) []string { return migrationNames(t, migrations.Migrations, name) }
	if s, p := names(dialect.SQLite), names(dialect.PG); len(s) == 0 || !slices.Equal(s, p) {
		t.Fatalf("sqlite migrations %q, postgres %q", s, p)
	}
	for _, name := range []dialect.Name{dialect.MySQL, dialect.MSSQL, dialect.Invalid} {
		if _, err := migrations.FS(name); !errors.Is(err, migrations.ErrUnsupportedDialect) {
			t.Errorf("FS(%s): %v, want ErrUnsupportedDialect", name, err)
		}
		if _, err := migrations.Migrations(name); !errors.Is(err, migrations.ErrUnsupportedDialect) {
			t.Errorf("Migrations(%s): %v, want ErrUnsupportedDialect", name, err)
		}
	}
}

// TestAppMigrator adds dbsync's migrations to an application's own bun
// migrator, with bun's default bookkeeping table.
func TestAppMigrator(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		app := migrate.NewMigrations()
		err := app.Discover(fstest.MapFS{
			"20240101000000_things.up.sql":   {Data: []byte("CREATE TABLE things (id BIGINT PRIMARY KEY)")},
			"20240101000000_things.down.sql": {Data: []byte("DROP TABLE things")},
		})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := migrations.Migrations(db.Dialect().Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms.Sorted() {
			app.Add(m)
		}
		m := migrate.NewMigrator(db, app)
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		group, err := m.Migrate(ctx)
		if err != nil {
			t.Fatalf("application migrator: %v", err)
		}
		if got, want := len(group.Migrations), len(ms.Sorted())+1; got != want {
			t.Fatalf("applied %d migrations, want %d", got, want)
		}
		for _, table := range append(slices.Clone(syncTables), "things", "bun_migrations") {
			if !tableExists(t, db, table) {
				t.Errorf("table %s missing", table)
			}
		}
		if tableExists(t, db, migrations.TableName) {
			t.Errorf("the application migrator created %s", migrations.TableName)
		}
		checkModels(t, db)

		// Migrate on top of it is harmless.
		migrate1(t, db)
		if n, err := db.NewSelect().Model((*models.State)(nil)).Count(ctx); err != nil || n != 1 {
			t.Fatalf("sync_state: %d rows (%v) after Migrate, want 1", n, err)
		}
		if n, err := db.NewSelect().Model((*models.ContentType)(nil)).Count(ctx); err != nil || n != 1 {
			t.Fatalf("sync_content_types: %d rows (%v) after Migrate, want 1", n, err)
		}

		// The application can roll everything back.
		if _, err := m.Rollback(ctx); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		for _, table := range append(slices.Clone(syncTables), "things") {
			if tableExists(t, db, table) {
				t.Errorf("table %s still exists after rollback", table)
			}
		}
	})
}

// peerTables are the peer's tables (sync_lww*), created by MigratePeer only.
var peerTables = []string{"sync_lww", "sync_lww_node", "sync_lww_peers", "sync_lww_nonces", "sync_lww_epochs", "sync_lww_feed", "sync_lww_cursor_epochs", "sync_lww_capture"}

// TestPeerTablesApart: Migrate (client/server) does not create the peer's
// tables; MigratePeer does, idempotently, and adopts the tables an older
// Migrate created, keeping their rows; DropAll drops them too.
func TestPeerTablesApart(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		migrate1(t, db)
		for _, table := range append(slices.Clone(peerTables), migrations.PeerTableName) {
			if tableExists(t, db, table) {
				t.Errorf("Migrate created %s", table)
			}
		}
		// A database migrated before the split holds the peer's tables,
		// created by the old 0002_peer: made here from the same SQL.
		fsys, err := migrations.PeerFS(db.Dialect().Name())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := fs.ReadFile(fsys, "0001_lww.tx.up.sql")
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range strings.Split(string(raw), "--bun:split") {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO sync_lww_node (id, node, hlc, seq) VALUES (1, 'n', 7, 3)"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := migrations.MigratePeer(ctx, db); err != nil {
				t.Fatalf("MigratePeer: %v", err)
			}
		}
		var seq int64
		if err := db.QueryRowContext(ctx, "SELECT seq FROM sync_lww_node WHERE id = 1").Scan(&seq); err != nil || seq != 3 {
			t.Fatalf("sync_lww_node after MigratePeer: seq %d (%v), want the row kept", seq, err)
		}
		ms, err := migrations.PeerMigrations(db.Dialect().Name())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		if err := db.NewSelect().Table(migrations.PeerTableName).Column("name").Scan(ctx, &names); err != nil {
			t.Fatal(err)
		}
		if len(names) != len(ms.Sorted()) {
			t.Fatalf("%s holds %q, want each of the %d peer migrations once", migrations.PeerTableName, names, len(ms.Sorted()))
		}
		if err := migrations.DropAll(ctx, db); err != nil {
			t.Fatalf("DropAll: %v", err)
		}
		for _, table := range append(slices.Clone(peerTables), migrations.PeerTableName, migrations.PeerLocksTableName, migrations.TableName) {
			if tableExists(t, db, table) {
				t.Errorf("table %s still exists after DropAll", table)
			}
		}
		// A new database: MigratePeer alone creates the peer's tables.
		if err := migrations.MigratePeer(ctx, db); err != nil {
			t.Fatalf("MigratePeer: %v", err)
		}
		for _, table := range peerTables {
			if !tableExists(t, db, table) {
				t.Errorf("table %s missing after MigratePeer", table)
			}
		}
	})
}

// TestPeerDialectParity: both dialect directories of the peer's set hold
// the same migrations, each with an up and a down file.
func TestPeerDialectParity(t *testing.T) {
	t.Parallel()
	names := func(name dialect.Name) []string { return migrationNames(t, migrations.PeerMigrations, name) }
	if s, p := names(dialect.SQLite), names(dialect.PG); len(s) == 0 || !slices.Equal(s, p) {
		t.Fatalf("sqlite peer migrations %q, postgres %q", s, p)
	}
	if _, err := migrations.PeerFS(dialect.MySQL); !errors.Is(err, migrations.ErrUnsupportedDialect) {
		t.Errorf("PeerFS(mysql): %v, want ErrUnsupportedDialect", err)
	}
}

// migrationNames lists the migrations of one set and dialect as
// name_comment, checking each has an up and a down function.
func migrationNames(t *testing.T, set func(dialect.Name) (*migrate.Migrations, error), name dialect.Name) []string {
	t.Helper()
	ms, err := set(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms.Sorted() {
		if m.Up == nil || m.Down == nil {
			t.Errorf("%s %s lacks an up or down function", name, m.Name)
		}
		out = append(out, m.Name+"_"+m.Comment)
	}
	return out
}

// TestMigrateOneConnection: Migrate, MigratePeer and DropAll on a pool that
// allows one connection (SetMaxOpenConns(1)) finish, also when two such
// pools (two processes) migrate one new database at once. On PostgreSQL the
// migration lock is held by a session; it once took a second connection
// for the migrator while holding the only one, and waited forever.
func TestMigrateOneConnection(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var open func() (*bun.DB, error)
			switch kind {
			case dbtest.KindSQLite:
				path := dbtest.SQLitePath(t)
				open = func() (*bun.DB, error) { return dbtest.OpenSQLite(path) }
			case dbtest.KindPostgres:
				url := dbtest.PostgresSchemaURL(t)
				open = func() (*bun.DB, error) { return dbtest.OpenPostgres(url) }
			}
			dbs := make([]*bun.DB, 2)
			for i := range dbs {
				db, err := open()
				if err != nil {
					t.Fatal(err)
				}
				db.SetMaxOpenConns(1)
				t.Cleanup(func() { _ = db.Close() })
				dbs[i] = db
			}
			// A deadlock shows as the deadline, not as a hung test.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			errs := make(chan error, len(dbs))
			for _, db := range dbs {
				go func() {
					err := migrations.Migrate(ctx, db)
					if err == nil {
						err = migrations.MigratePeer(ctx, db)
					}
					errs <- err
				}()
			}
			for range dbs {
				if err := <-errs; err != nil {
					t.Fatalf("Migrate on a pool of one connection: %v", err)
				}
			}
			checkModels(t, dbs[0])
			if !tableExists(t, dbs[0], "sync_lww") {
				t.Fatal("MigratePeer created no sync_lww")
			}
			if err := migrations.DropAll(ctx, dbs[1]); err != nil {
				t.Fatalf("DropAll on a pool of one connection: %v", err)
			}
			if tableExists(t, dbs[0], migrations.TableName) || tableExists(t, dbs[0], "sync_lww") {
				t.Fatal("DropAll left tables behind")
			}
		})
	}
}

// TestMigrateKeepsNodesLive: migration 0006 gives the nodes registered
// before it an activity row holding version 0, so the first trim after
// the upgrade leaves none of them behind.
func TestMigrateKeepsNodesLive(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		all, err := migrations.Migrations(db.Dialect().Name())
		if err != nil {
			t.Fatal(err)
		}
		before := migrate.NewMigrations()
		for _, m := range all.Sorted() {
			if m.Name < "0006" {
				before.Add(m)
			}
		}
		m := migrate.NewMigrator(db, before, migrate.WithTableName(migrations.TableName), migrate.WithLocksTableName(migrations.LocksTableName))
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if tableExists(t, db, "sync_node_activity") {
			t.Fatal("sync_node_activity exists before 0006")
		}
		node := &models.Node{Registered: time.Now().UTC(), Secret: "s"}
		if _, err := db.NewInsert().Model(node).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		migrate1(t, db)
		var held []int64
		if err := db.NewSelect().Table("sync_node_activity").Column("held_version").Where("node_id = ?", node.NodeID).Scan(ctx, &held); err != nil {
			t.Fatal(err)
		}
		if len(held) != 1 || held[0] != 0 {
			t.Fatalf("node %d's activity after the upgrade: held %v, want version 0", node.NodeID, held)
		}
	})
}

// TestLogOrdersNotReused (SQLite): the log's orders are never reused
// (0011, AUTOINCREMENT). Before, a new entry was numbered one past the
// greatest left in the table: once the top entries were deleted while a
// push attempt was recorded up to them, a later write took one of their
// numbers, and settling the attempt ("order" <= max_order) deleted it
// unpushed. A database upgraded to 0011 keeps its entries, and numbers
// the next past every order its log and its push attempt hold.
func TestLogOrdersNotReused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.SQLite(t)
	migrate1(t, db)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	next := func() int64 {
		t.Helper()
		var order int64
		if err := db.QueryRowContext(ctx, `INSERT INTO sync_operations (row_id, content_type_id, command) VALUES ('r', 1, 'i') RETURNING "order"`).Scan(&order); err != nil {
			t.Fatal(err)
		}
		return order
	}
	for range 3 {
		next()
	}
	exec(`DELETE FROM sync_operations WHERE "order" >= 2`)
	if got := next(); got != 4 {
		t.Fatalf("after the top entries were deleted the next order is %d, want 4 (never reused)", got)
	}

	// A database from before 0011: its log reuses orders, and a push
	// attempt covers more than the log holds (its top entries deleted).
	sub, err := migrations.FS(dialect.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	down, err := fs.ReadFile(sub, "0011_log_order_autoincrement.tx.down.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range strings.Split(string(down), "--bun:split") {
		exec(q)
	}
	exec("DELETE FROM "+migrations.TableName+" WHERE name = ?", "0011")
	exec(`DELETE FROM sync_operations WHERE "order" > 1`)
	exec(`INSERT INTO sync_push_attempts (push_id, max_order, created) VALUES ('p', 9, CURRENT_TIMESTAMP)`)
	if got := next(); got != 2 {
		t.Fatalf("before 0011 the next order is %d, want 2 (reused)", got)
	}
	migrate1(t, db)
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sync_operations WHERE "order" IN (1, 2)`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("the log holds %d of its 2 entries after 0011 (%v)", n, err)
	}
	if got := next(); got != 10 {
		t.Fatalf("after 0011 the next order is %d, want 10 (past the push attempt's max_order 9)", got)
	}
}

// queries records the statements run through a bun handle.
type queries struct {
	mu   sync.Mutex
	list []string
}

func (q *queries) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (q *queries) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	q.mu.Lock()
	q.list = append(q.list, e.Query)
	q.mu.Unlock()
}

// TestMigrateUpToDate: on a database where every migration is recorded,
// Migrate and MigratePeer only read (no lock, no bookkeeping tables
// created again); with a migration not recorded (a database of an
// earlier release) they apply it and record it.
func TestMigrateUpToDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		migrate func(context.Context, *bun.DB) error
		table   string
	}{
		{"client-server", migrations.Migrate, migrations.TableName},
		{"peer", migrations.MigratePeer, migrations.PeerTableName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			each(t, func(t *testing.T, raw *bun.DB) {
				ctx := t.Context()
				if err := tc.migrate(ctx, raw); err != nil {
					t.Fatal(err)
				}
				q := &queries{}
				db := raw.WithQueryHook(q)
				if err := tc.migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
				for _, s := range q.list {
					if !strings.HasPrefix(s, "SELECT ") || strings.Contains(s, "pg_advisory_lock") {
						t.Errorf("Migrate on an up-to-date database ran %q", s)
					}
				}
				if len(q.list) == 0 {
					t.Error("Migrate on an up-to-date database read nothing")
				}
				// The latest migration not recorded: applied again.
				var last string
				if err := db.NewSelect().Table(tc.table).ColumnExpr("max(name)").Scan(ctx, &last); err != nil {
					t.Fatal(err)
				}
				if _, err := db.NewDelete().Table(tc.table).Where("name = ?", last).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				q.list = nil
				if err := tc.migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := db.NewSelect().Table(tc.table).ColumnExpr("count(*)").Where("name = ?", last).Scan(ctx, &n); err != nil || n != 1 {
					t.Fatalf("migration %s recorded %d times (%v) after Migrate, want once", last, n, err)
				}
				if !slices.ContainsFunc(q.list, func(s string) bool { return strings.HasPrefix(s, "INSERT INTO") }) {
					t.Errorf("Migrate with migration %s not recorded did not record it: ran %q", last, q.list)
				}
			})
		})
	}
}
