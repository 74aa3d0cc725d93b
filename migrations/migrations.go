// Package migrations creates dbsync's internal tables (sync_*) in SQLite and
// PostgreSQL.
//
// Two sets of migrations: the tables of client/server sync ([Migrate],
// [Migrations]) and the tables of peer-to-peer sync, sync_lww* ([MigratePeer],
// [PeerMigrations]; package peer applies both). A client/server deployment
// never holds the peer's tables. (Databases migrated before the two sets were
// split hold the peer's tables already; MigratePeer adopts them.)
//
// The SQL is embedded in the binary, one directory per dialect with the same
// version numbers in both. Two ways to apply it:
//
//   - [Migrate] applies what is missing in one call (like python-sync-db's
//     create_all). It keeps its bookkeeping in its own tables,
//     [TableName] and [LocksTableName], so it never touches the application's
//     bun_migrations.
//   - [Migrations] returns the same files as a bun migrate collection, for an
//     application that runs everything through its own bun migrator.
//
// Every statement is idempotent (IF NOT EXISTS), so running both, or running
// Migrate from several processes at once, is safe. The package imports
// nothing from the rest of the module.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"
)

//go:embed sqlite/*.sql postgres/*.sql peer/sqlite/*.sql peer/postgres/*.sql
var files embed.FS

// Names of the bookkeeping tables used by [Migrate].
const (
	TableName      = "sync_migrations"
	LocksTableName = "sync_migration_locks"
)

// Names of the bookkeeping tables used by [MigratePeer].
const (
	PeerTableName      = "sync_peer_migrations"
	PeerLocksTableName = "sync_peer_migration_locks"
)

// set is one set of migrations: its directory and bookkeeping tables.
type set struct {
	dir          string // "" or "peer/"
	table, locks string
}

var (
	mainSet = set{dir: "", table: TableName, locks: LocksTableName}
	peerSet = set{dir: "peer/", table: PeerTableName, locks: PeerLocksTableName}
)

// pgLockClass is the first half of the pg_advisory_lock key that
// serializes Migrate across processes sharing one PostgreSQL schema
// ("dbsM"); the second half is a hash of the schema (pgLockArgs), so that
// migrations of other schemas on the database do not wait.
const pgLockClass = 0x6462_734d

// pgLockArgs is the key of the migration lock in SQL: the class and the
// current schema's hash.
const pgLockArgs = "?, hashtext(COALESCE(current_schema(), ''))"

// ErrUnsupportedDialect is returned by [FS], [PeerFS], [Migrations],
// [PeerMigrations], [Migrate], [MigratePeer] and [DropAll] for a database that is neither SQLite nor PostgreSQL.
var ErrUnsupportedDialect = errors.New("dbsync: unsupported database dialect (want sqlite or pg)")

// FS returns the migration files of one dialect: files named
// NNNN_name.tx.up.sql and NNNN_name.tx.down.sql.
func FS(name dialect.Name) (fs.FS, error) { return mainSet.fs(name) }

// PeerFS returns the migration files of the peer's tables for one dialect,
// named as FS's.
func PeerFS(name dialect.Name) (fs.FS, error) { return peerSet.fs(name) }

func (st set) fs(name dialect.Name) (fs.FS, error) {
	var dir string
	switch name {
	case dialect.SQLite:
		dir = "sqlite"
	case dialect.PG:
		dir = "postgres"
	default:
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedDialect, name)
	}
	return fs.Sub(files, st.dir+dir)
}

// Migrations returns dbsync's migrations for one dialect as a bun migrate
// collection. An application with its own migrator can add them to its own
// collection:
//
//	ms, _ := migrations.Migrations(db.Dialect().Name())
//	for _, m := range ms.Sorted() {
//		appMigrations.Add(m)
//	}
func Migrations(name dialect.Name) (*migrate.Migrations, error) { return mainSet.migrations(name) }

// PeerMigrations returns the migrations of the peer's tables for one
// dialect as a bun migrate collection (see Migrations). Its version numbers
// overlap Migrations': keep it in a collection of its own.
func PeerMigrations(name dialect.Name) (*migrate.Migrations, error) {
	return peerSet.migrations(name)
}

func (st set) migrations(name dialect.Name) (*migrate.Migrations, error) {
	sub, err := st.fs(name)
	if err != nil {
		return nil, err
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(sub); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	return ms, nil
}

// Migrate creates or upgrades dbsync's internal tables. It is idempotent and
// safe to call at every start: when every migration is recorded as
// applied it only reads. On PostgreSQL concurrent calls on one schema
// are serialized with an advisory lock (calls on other schemas do not wait).
func Migrate(ctx context.Context, db *bun.DB) error { return mainSet.migrate(ctx, db) }

// MigratePeer creates or upgrades the peer's tables (sync_lww*), keeping its
// bookkeeping in [PeerTableName] and [PeerLocksTableName]. Like Migrate it is
// idempotent; tables an older Migrate created are kept as they are. Package
// peer calls it (peer.Migrate, peer.New).
func MigratePeer(ctx context.Context, db *bun.DB) error { return peerSet.migrate(ctx, db) }

func (st set) migrate(ctx context.Context, db *bun.DB) error {
	if ok, err := st.upToDate(ctx, db); err != nil {
		return err
	} else if ok {
		return nil
	}
	return st.withLock(ctx, db, func(m *migrate.Migrator) error {
		if _, err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("apply migrations: %w", err)
		}
		return nil
	})
}

// upToDate reports whether every migration of the set is recorded as
// applied: then Migrate has nothing to do, and returns without the
// migrator (its lock, and its bookkeeping tables created IF NOT EXISTS:
// a few milliseconds of DDL on PostgreSQL at every node's and server's
// start). The migrator records a migration in the transaction that
// applies it (WithMarkAppliedOnSuccess), so a migration seen recorded
// is committed.
func (st set) upToDate(ctx context.Context, db *bun.DB) (bool, error) {
	ms, err := st.migrations(db.Dialect().Name())
	if err != nil {
		return false, err
	}
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.Dialect().Name() == dialect.PG {
		q = "SELECT count(*) FROM pg_class WHERE relname = ? AND relkind IN ('r', 'p') AND relnamespace = quote_ident(current_schema())::regnamespace"
	}
	var n int
	if err := db.QueryRowContext(ctx, q, st.table).Scan(&n); err != nil {
		return false, fmt.Errorf("look for %s: %w", st.table, err)
	}
	if n == 0 {
		return false, nil
	}
	var applied []string
	if err := db.NewSelect().Table(st.table).Column("name").Scan(ctx, &applied); err != nil {
		return false, fmt.Errorf("read %s: %w", st.table, err)
	}
	done := make(map[string]bool, len(applied))
	for _, name := range applied {
		done[name] = true
	}
	for _, m := range ms.Sorted() {
		if !done[m.Name] {
			return false, nil
		}
	}
	return true, nil
}

// DropAll removes dbsync's internal tables, the peer's included, and their
// bookkeeping tables (like python-sync-db's drop_all). Application tables
// and the capture triggers on them are left alone; remove the triggers first
// with oplog.Uninstall.
func DropAll(ctx context.Context, db *bun.DB) error {
	if err := peerSet.dropAll(ctx, db); err != nil {
		return err
	}
	return mainSet.dropAll(ctx, db)
}

func (st set) dropAll(ctx context.Context, db *bun.DB) error {
	err := st.withLock(ctx, db, func(m *migrate.Migrator) error {
		for {
			group, err := m.Rollback(ctx)
			if err != nil {
				return fmt.Errorf("roll back migrations: %w", err)
			}
			if group.IsZero() {
				return nil
			}
		}
	})
	if err != nil {
		return err
	}
	for _, table := range []string{st.table, st.locks} {
		if _, err := db.NewDropTable().Table(table).IfExists().Exec(ctx); err != nil {
			return fmt.Errorf("drop %s: %w", table, err)
		}
	}
	return nil
}

func (st set) withLock(ctx context.Context, db *bun.DB, fn func(*migrate.Migrator) error) error {
	ms, err := st.migrations(db.Dialect().Name())
	if err != nil {
		return err
	}
	m := migrate.NewMigrator(db, ms,
		migrate.WithTableName(st.table),
		migrate.WithLocksTableName(st.locks),
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithUpsert(true),
	)
	if db.Dialect().Name() == dialect.PG {
		unlock, err := pgLock(ctx, db)
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer unlock()
	}
	if db.Dialect().Name() != dialect.SQLite {
		if err := m.Init(ctx); err != nil {
			return fmt.Errorf("init migration tables: %w", err)
		}
		return fn(m)
	}
	// SQLite has no advisory lock. Processes migrating one new file at once
	// wait on each other through the busy timeout, except where SQLite
	// refuses at once (SQLITE_BUSY when a statement that read the schema
	// must then write after another connection wrote): that attempt wrote
	// nothing (each migration is one transaction, every statement
	// idempotent), so it is retried.
	for attempt := 0; ; attempt++ {
		err := m.Init(ctx)
		if err != nil {
			err = fmt.Errorf("init migration tables: %w", err)
		} else {
			err = fn(m)
		}
		if err == nil || !sqliteBusy(err) || attempt >= 50 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		}
	}
}

// pgLock takes the migration lock, a session-level advisory lock, and
// returns its release. The lock is held by a connection taken from the pool
// for the purpose, while the migrator uses others; a pool that allows one
// connection (SetMaxOpenConns(1)) has none to spare, so there the lock is
// taken through the pool, by its only session, which the migrator then
// uses too (a session may take its own lock again), and released through
// it. Should that connection be closed meanwhile, the lock went with its
// session.
func pgLock(ctx context.Context, db *bun.DB) (unlock func(), err error) {
	var conn bun.IConn = db
	release := func() {}
	if db.Stats().MaxOpenConnections != 1 {
		c, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		conn, release = c, func() { _ = c.Close() }
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock("+pgLockArgs+")", pgLockClass); err != nil {
		release()
		return nil, err
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock("+pgLockArgs+")", pgLockClass)
		release()
	}, nil
}

// sqliteBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED
// (primary codes 5 and 6, also in their extended forms).
func sqliteBusy(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		if c := coded.Code() & 0xff; c == 5 || c == 6 {
			return true
		}
	}
	return strings.Contains(err.Error(), "database is locked") || strings.Contains(err.Error(), "SQLITE_BUSY")
}
