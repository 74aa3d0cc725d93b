package dbtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// Creating a PostgreSQL schema and installing dbsync in it (tables,
// indexes, capture functions and triggers), then dropping it, costs the
// server about a quarter of a second of CPU: most of the PostgreSQL side
// of the suite. PostgresFrom pays it once per key and test binary and
// hands the same schema to the next test of the key, its rows put back
// as they were after the install.

// pgPool holds the schemas tests gave back, by key.
type pgPool struct {
	mu   sync.Mutex
	main bool                   // Main runs the tests and drops the schemas after them
	free map[string][]*pgSchema // key → schemas ready for a test
	all  []string               // every pooled schema, for Main to drop
}

var pool = &pgPool{free: map[string][]*pgSchema{}}

// pgSchema is one installed schema and the state a test gets it in.
type pgSchema struct {
	name  string
	url   string
	print string            // catalogPrint after init (and after a reset's TRUNCATE)
	rows  map[string]string // table → its rows after init, as a JSON array
	seqs  []pgSequence      // its sequences after init
}

type pgSequence struct {
	Name     string `bun:"name"`
	Last     int64  `bun:"last"`
	IsCalled bool   `bun:"called"`
}

// Main runs the tests of a package (call it from TestMain) and then drops
// the PostgreSQL schemas PostgresFrom kept for reuse. Without it
// PostgresFrom gives every test a schema of its own, dropped after it.
func Main(m *testing.M) {
	pool.mu.Lock()
	pool.main = true
	pool.mu.Unlock()
	code := m.Run()
	pool.mu.Lock()
	names := pool.all
	pool.all, pool.free = nil, map[string][]*pgSchema{}
	pool.mu.Unlock()
	for _, name := range names {
		if _, err := pgAdmin.ExecContext(context.Background(), "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: drop schema %s: %v\n", name, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// PostgresFrom opens a PostgreSQL schema, closed at cleanup, holding what
// init installs (init runs on it as on an empty schema), like SQLiteFrom:
// key names init. Under Main the schema then goes back to a pool, emptied
// and given the rows and sequence values init left, for the next test of
// key; a test that changed its definitions (tables, columns, constraints,
// indexes, triggers, functions, types) has it dropped instead. Only the
// returned handle may use the schema: it must be the one open at the
// end of the test.
func PostgresFrom(t testing.TB, key string, init func(context.Context, *bun.DB) error) *bun.DB {
	t.Helper()
	base := PostgresURL(t)
	pool.mu.Lock()
	pooled := pool.main
	var s *pgSchema
	if free := pool.free[key]; len(free) > 0 {
		s = free[len(free)-1]
		pool.free[key] = free[:len(free)-1]
	}
	pool.mu.Unlock()
	if !pooled {
		db := Postgres(t)
		if err := init(context.Background(), db); err != nil {
			t.Fatalf("PostgreSQL template %s: %v", key, err)
		}
		return db
	}
	if s == nil {
		var err error
		if s, err = newPooled(base, init); err != nil {
			t.Fatalf("PostgreSQL template %s: %v", key, err)
		}
	}
	db, err := OpenPostgres(s.url)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() {
		_ = db.Close()
		if err := s.reset(context.Background()); err != nil {
			if _, err := pgAdmin.ExecContext(context.Background(), "DROP SCHEMA "+s.name+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", s.name, err)
			}
			return
		}
		pool.mu.Lock()
		pool.free[key] = append(pool.free[key], s)
		pool.mu.Unlock()
	})
	return db
}

// newPooled creates a schema, runs init on it and records what a test
// gets it in.
func newPooled(base string, init func(context.Context, *bun.DB) error) (*pgSchema, error) {
	ctx := context.Background()
	name := schemaName()
	if _, err := pgAdmin.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	pool.mu.Lock()
	pool.all = append(pool.all, name)
	pool.mu.Unlock()
	url, err := schemaURL(base, name)
	if err != nil {
		return nil, err
	}
	s := &pgSchema{name: name, url: url, rows: map[string]string{}}
	db, err := OpenPostgres(url)
	if err != nil {
		return nil, err
	}
	err = init(ctx, db)
	_ = db.Close()
	if err != nil {
		return nil, err
	}
	err = pgAdmin.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, q := range []string{"SET LOCAL search_path = " + name, "SET LOCAL jit = off", "SET LOCAL max_parallel_workers_per_gather = 0"} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if s.print, err = catalogPrint(ctx, tx, name); err != nil {
			return err
		}
		tables, err := s.tables(ctx, tx)
		if err != nil {
			return err
		}
		for _, tb := range tables {
			var rows string
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(json_agg(t), '[]')::text FROM "+tb.Name+" t").Scan(&rows); err != nil {
				return err
			}
			if rows != "[]" {
				s.rows[tb.Name] = rows
			}
		}
		var seqs []string
		if err := tx.NewRaw("SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = ?::regnamespace", name).Scan(ctx, &seqs); err != nil {
			return err
		}
		for _, seq := range seqs {
			st := pgSequence{Name: seq}
			if err := tx.QueryRowContext(ctx, "SELECT last_value, is_called FROM "+seq).Scan(&st.Last, &st.IsCalled); err != nil {
				return err
			}
			s.seqs = append(s.seqs, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record schema %s: %w", name, err)
	}
	return s, nil
}

type pgTable struct {
	Name  string `bun:"name"`
	Bytes int64  `bun:"bytes"`
}

func (s *pgSchema) tables(ctx context.Context, db bun.IDB) ([]pgTable, error) {
	var out []pgTable
	err := db.NewRaw("SELECT relname AS name, pg_relation_size(oid) AS bytes FROM pg_class WHERE relkind = 'r' AND relnamespace = ?::regnamespace", s.name).Scan(ctx, &out)
	return out, err
}

// reset empties the schema and puts back what init left, unless a test
// changed its definitions. Triggers (foreign keys) stay off meanwhile
// (session_replication_role), capture too: both sync modes' switches
// (dialect.OplogSwitch's dbsync.capture, dialect.PeerSwitch's
// dbsync.peer_capture; this package imports no dialect).
func (s *pgSchema) reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pgAdmin.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, q := range []string{
			"SET LOCAL search_path = " + s.name,
			"SET LOCAL session_replication_role = replica",
			// dbsync's capture triggers fire in every role: off, as
			// for dbsync's own writes.
			"SELECT set_config('dbsync.capture', 'off', true)",
			"SELECT set_config('dbsync.peer_capture', 'off', true)",
			"SET LOCAL lock_timeout = '5s'",
			"SET LOCAL jit = off",
			"SET LOCAL max_parallel_workers_per_gather = 0",
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		tables, err := s.tables(ctx, tx)
		if err != nil {
			return err
		}
		// A transaction the test left open (a request still applying
		// when it ended: db.Close does not wait for it) would commit its
		// rows after the deletes below, into the next test's schema.
		// Every table locked first waits for it.
		names := make([]string, len(tables))
		for i, tb := range tables {
			names[i] = tb.Name
		}
		if len(names) > 0 {
			if _, err := tx.ExecContext(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				return err
			}
		}
		print, err := catalogPrint(ctx, tx, s.name)
		if err != nil {
			return err
		}
		if print != s.print {
			return fmt.Errorf("schema %s changed", s.name)
		}
		truncated := false
		for _, tb := range tables {
			q := "DELETE FROM " + tb.Name
			if tb.Bytes > 1<<20 {
				q = "TRUNCATE " + tb.Name
				truncated = true
			}
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if truncated {
			// TRUNCATE gives a table new files: its pg_class row is
			// written anew.
			if s.print, err = catalogPrint(ctx, tx, s.name); err != nil {
				return err
			}
		}
		for table, rows := range s.rows {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_recordset(NULL::"+table+", ?)", rows); err != nil {
				return err
			}
		}
		for _, seq := range s.seqs {
			if _, err := tx.ExecContext(ctx, "SELECT setval(?, ?, ?)", seq.Name, seq.Last, seq.IsCalled); err != nil {
				return err
			}
		}
		return nil
	})
}

// catalogPrint digests which rows of the catalogs define schema's objects
// (relations and their columns and defaults, constraints, indexes,
// triggers, functions, types) and in which transaction each was last
// written (xmin): any change of a definition writes its rows anew, a
// test's writes to the tables' rows none. It reads no definition (the
// pg_get_*def functions cost milliseconds a schema).
func catalogPrint(ctx context.Context, db bun.IDB, schema string) (string, error) {
	var out string
	err := db.NewRaw(`WITH r AS (SELECT c.oid, c.xmin FROM pg_class c WHERE c.relnamespace = ?0::regnamespace)
SELECT md5(COALESCE(string_agg(x, ',' ORDER BY x), '')) FROM (
SELECT 'c' || r.oid || ':' || r.xmin AS x FROM r
UNION ALL SELECT 'a' || a.attrelid || '.' || a.attnum || ':' || a.xmin FROM r JOIN pg_attribute a ON a.attrelid = r.oid WHERE a.attnum > 0
UNION ALL SELECT 'd' || d.oid || ':' || d.xmin FROM r JOIN pg_attrdef d ON d.adrelid = r.oid
UNION ALL SELECT 'k' || k.oid || ':' || k.xmin FROM pg_constraint k WHERE k.connamespace = ?0::regnamespace
UNION ALL SELECT 'i' || i.indexrelid || ':' || i.xmin FROM r JOIN pg_index i ON i.indexrelid = r.oid
UNION ALL SELECT 't' || t.oid || ':' || t.xmin FROM r JOIN pg_trigger t ON t.tgrelid = r.oid
UNION ALL SELECT 'p' || p.oid || ':' || p.xmin FROM pg_proc p WHERE p.pronamespace = ?0::regnamespace
UNION ALL SELECT 'y' || y.oid || ':' || y.xmin FROM pg_type y WHERE y.typnamespace = ?0::regnamespace
) s`, schema).Scan(ctx, &out)
	return out, err
}
