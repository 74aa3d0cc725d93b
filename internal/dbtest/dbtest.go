// Package dbtest opens real test databases: a SQLite file in the test's
// temporary directory, and a PostgreSQL schema of its own on the server named
// by DBSYNC_TEST_POSTGRES. Only tests import it.
//
// Without a reachable PostgreSQL, PostgreSQL tests are skipped with a loud
// message, except when CI=true, where they fail.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// EnvPostgres names the environment variable with the PostgreSQL URL.
const EnvPostgres = "DBSYNC_TEST_POSTGRES"

// DefaultPostgres is used when EnvPostgres is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// EnvLong names the environment variable that selects the long sizes of
// soak and stress tests: DBSYNC_LONG=1.
const EnvLong = "DBSYNC_LONG"

// Long reports a DBSYNC_LONG=1 run.
func Long() bool { return os.Getenv(EnvLong) == "1" }

// Race reports whether the test binary was built with the race detector.
// SQLite (C translated to Go) runs about 20 times slower under it, so
// tests use smaller data sets there.
var Race = sync.OnceValue(func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
})

// Size picks a size for -short, ordinary and DBSYNC_LONG=1 runs.
func Size(short, normal, long int) int {
	switch {
	case Long():
		return long
	case testing.Short():
		return short
	}
	return normal
}

// Kinds of test database.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Kinds lists the databases every DB test runs on.
var Kinds = []string{KindSQLite, KindPostgres}

// SQLiteDSN is the DSN used for SQLite files (modernc driver): WAL, a busy
// timeout, foreign keys on, and immediate transactions so that concurrent
// writers wait instead of failing.
func SQLiteDSN(path string) string {
	// SQLite reads the DSN as a URI: '%', '?' and '#' in the path (a fuzz
	// input's temporary directory is named after "seed#0") are escaped.
	path = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + path + "?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// maxIdle is how many idle connections a test pool keeps (the standard
// library keeps two and closes the others once used): each new SQLite
// connection parses the whole schema, capture triggers included, and each
// new PostgreSQL one starts a server process that warms its caches again.
// Together they were about a fifth of the suite's CPU.
const maxIdle = 16

// The dialects of the databases the tests open: one of each for the whole
// test binary, so that bun reads each model's struct once (a new dialect
// starts an empty table cache, and reading a model, its plural name's
// regular expressions above all, was about 6% of the end-to-end tests'
// CPU). A dialect holds nothing of a database but that cache.
var (
	sqliteDialect   = sqlitedialect.New()
	postgresDialect = pgdialect.New()
)

// OpenSQLite opens a SQLite file.
func OpenSQLite(path string) (*bun.DB, error) {
	sqldb, err := sql.Open(sqliteshim.ShimName, SQLiteDSN(path))
	if err != nil {
		return nil, err
	}
	sqldb.SetMaxIdleConns(maxIdle)
	return bun.NewDB(sqldb, sqliteDialect), nil
}

// OpenPostgres opens a PostgreSQL URL with the pgx driver in simple
// protocol mode (bun formats queries itself). A schema's URL (schemaURL)
// takes its connections from the binary's cache (pgconn.go).
func OpenPostgres(dsn string) (*bun.DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	if q.Get("default_query_exec_mode") == "" {
		q.Set("default_query_exec_mode", "simple_protocol")
	}
	u.RawQuery = q.Encode()
	var sqldb *sql.DB
	if c, ok, err := sharedConnector(u.String()); err != nil {
		return nil, err
	} else if ok {
		sqldb = sql.OpenDB(c)
	} else if sqldb, err = sql.Open("pgx", u.String()); err != nil {
		return nil, err
	}
	sqldb.SetMaxIdleConns(maxIdle)
	return bun.NewDB(sqldb, postgresDialect), nil
}

// SQLitePath returns a fresh database file path in the test's temp dir.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

// SQLite opens a fresh SQLite file database closed at cleanup.
func SQLite(t testing.TB) *bun.DB {
	t.Helper()
	db, err := OpenSQLite(SQLitePath(t))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// SQLiteWithout opens a fresh SQLite file database, closed at cleanup,
// whose DSN lacks the pragma named (e.g. "foreign_keys"), for the tests
// of what dbsync refuses without it.
func SQLiteWithout(t testing.TB, pragma string) *bun.DB {
	t.Helper()
	dsn := SQLiteDSN(SQLitePath(t))
	i := strings.Index(dsn, "&_pragma="+pragma+"(")
	if i < 0 {
		t.Fatalf("the DSN sets no pragma %s", pragma)
	}
	j := strings.Index(dsn[i+1:], "&")
	dsn = dsn[:i] + dsn[i+1+j:]
	sqldb, err := sql.Open(sqliteshim.ShimName, dsn)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	db := bun.NewDB(sqldb, sqliteDialect)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// template is a SQLite database file built once per test binary.
type template struct {
	once sync.Once
	raw  map[string][]byte // file suffix ("", "-wal") → contents
	err  error
}

var templates sync.Map // key → *template

// SQLiteFrom opens a fresh SQLite file, closed at cleanup, that starts as a
// copy of a template database: init builds the template once per test
// binary and key (a name that stands for init). It pays once for the setup
// many tests repeat on an empty file (schemas, migrations, triggers).
func SQLiteFrom(t testing.TB, key string, init func(context.Context, *bun.DB) error) *bun.DB {
	t.Helper()
	v, _ := templates.LoadOrStore(key, &template{})
	tp := v.(*template)
	tp.once.Do(func() { tp.raw, tp.err = buildTemplate(key, init) })
	if tp.err != nil {
		t.Fatalf("SQLite template %s: %v", key, tp.err)
	}
	path := SQLitePath(t)
	for suffix, raw := range tp.raw {
		if err := os.WriteFile(path+suffix, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// buildTemplate runs init on an empty file and returns the files it left
// once closed.
func buildTemplate(key string, init func(context.Context, *bun.DB) error) (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "dbtest-template-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	db, err := OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	if err := init(context.Background(), db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("build %s: %w", key, err)
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	raw := map[string][]byte{}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return nil, err
		}
		raw[suffix] = b
	}
	return raw, nil
}

var (
	pgOnce  sync.Once
	pgErr   error
	pgAdmin *bun.DB // creates and drops the tests' schemas; never closed
)

// PostgresURL returns the server URL, skipping the test (failing it under
// CI=true) when the server cannot be reached.
func PostgresURL(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgres)
	if dsn == "" {
		dsn = DefaultPostgres
	}
	pgOnce.Do(func() {
		db, err := OpenPostgres(dsn)
		if err != nil {
			pgErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if pgErr = db.PingContext(ctx); pgErr != nil {
			_ = db.Close()
			return
		}
		db.SetMaxOpenConns(4)
		vacuumCatalogs(ctx, db)
		pgAdmin = db
	})
	if pgErr != nil {
		msg := fmt.Sprintf("PostgreSQL at %s is not reachable (%v): set %s. THIS POSTGRESQL TEST IS SKIPPED.", dsn, pgErr, EnvPostgres)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: failing instead)")
		}
		t.Skip(msg)
	}
	return dsn
}

// vacuumCatalogs vacuums PostgreSQL's system catalogs when they hold more
// than 100,000 dead rows. The tests create and drop tens of thousands of
// tables, indexes and triggers per run; where autovacuum is off (as on
// this project's machine) every dead catalog row stays, each later
// lookup reads past them, and the planner, counting them, compiles plain
// catalog queries with JIT (half a second each). Best effort: a role not
// allowed to vacuum them skips it.
func vacuumCatalogs(ctx context.Context, db *bun.DB) {
	var dead int64
	err := db.QueryRowContext(ctx, "SELECT COALESCE(sum(n_dead_tup), 0) FROM pg_stat_sys_tables WHERE schemaname = 'pg_catalog'").Scan(&dead)
	if err != nil || dead < 100_000 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, "VACUUM pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_attrdef, pg_catalog.pg_constraint, pg_catalog.pg_depend, pg_catalog.pg_index, pg_catalog.pg_trigger, pg_catalog.pg_type, pg_catalog.pg_proc, pg_catalog.pg_sequence, pg_catalog.pg_namespace, pg_catalog.pg_description, pg_catalog.pg_shdepend"); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: vacuum the catalogs (%d dead rows): %v\n", dead, err)
	}
}

// PostgresSchemaURL creates a uniquely named schema, dropped at cleanup, and
// returns a URL whose connections use it as search_path. Several processes
// can open it to share the schema.
func PostgresSchemaURL(t testing.TB) string {
	t.Helper()
	return postgresSchemaURL(t, schemaName())
}

// PostgresQuotedSchema opens a fresh schema whose name only a quoted
// identifier spells (capitals and a space, as an application may name
// its schema), closed and dropped at cleanup.
func PostgresQuotedSchema(t testing.TB) *bun.DB {
	t.Helper()
	name := strings.Replace(schemaName(), "dbsync_t_", "Dbsync T ", 1)
	return openSchema(t, postgresSchemaURL(t, `"`+name+`"`))
}

// postgresSchemaURL creates schema (an SQL identifier, quoted or not),
// dropped at cleanup, and returns a URL whose connections use it as
// search_path.
func postgresSchemaURL(t testing.TB, schema string) string {
	t.Helper()
	base := PostgresURL(t)
	ctx := context.Background()
	if _, err := pgAdmin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := pgAdmin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := schemaURL(base, schema)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// schemaName returns a new unique schema name.
func schemaName() string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return "dbsync_t_" + hex.EncodeToString(rnd[:])
}

// schemaURL returns base with schema as the connections' search_path.
func schemaURL(base, schema string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("synchronous_commit", "off")
	// No parallel workers (each a process forked for the query) and no
	// JIT: the tests' tables are small, but the catalogs, bloated by
	// tens of thousands of tables created and dropped per run (where
	// autovacuum is off, as here), pushed catalog queries into parallel
	// plans, forking two workers for a query of a few milliseconds.
	q.Set("max_parallel_workers_per_gather", "0")
	q.Set("jit", "off")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Postgres opens a fresh PostgreSQL schema, closed and dropped at cleanup.
func Postgres(t testing.TB) *bun.DB {
	t.Helper()
	return openSchema(t, PostgresSchemaURL(t))
}

// openSchema opens a schema's URL, closed at cleanup.
func openSchema(t testing.TB, url string) *bun.DB {
	t.Helper()
	db, err := OpenPostgres(url)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Open opens a fresh database of the given kind.
func Open(t testing.TB, kind string) *bun.DB {
	t.Helper()
	switch kind {
	case KindSQLite:
		return SQLite(t)
	case KindPostgres:
		return Postgres(t)
	}
	t.Fatalf("unknown database kind %q", kind)
	return nil
}

// Each runs fn as a subtest on a fresh database of every kind.
func Each(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			fn(t, Open(t, kind))
		})
	}
}
