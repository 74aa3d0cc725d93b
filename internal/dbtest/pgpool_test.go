package dbtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

func TestMain(m *testing.M) { Main(m) }

// TestPostgresFromReuse: a schema PostgresFrom hands out again holds what
// init left (rows, sequence values) and nothing a test wrote; a schema
// whose definitions a test changed is dropped, not handed out again.
func TestPostgresFromReuse(t *testing.T) {
	ctx := context.Background()
	init := func(ctx context.Context, db *bun.DB) error {
		for _, q := range []string{
			"CREATE TABLE reuse_items (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)",
			"INSERT INTO reuse_items (v) VALUES ('init')",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	open := func(t *testing.T) (*bun.DB, string) {
		db := PostgresFrom(t, "dbtest.reuse", init)
		var schema string
		if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		return db, schema
	}
	state := func(t *testing.T, db *bun.DB) []string {
		var vs []string
		if err := db.NewRaw("SELECT v FROM reuse_items ORDER BY id").Scan(ctx, &vs); err != nil {
			t.Fatal(err)
		}
		var next string
		if err := db.QueryRowContext(ctx, "INSERT INTO reuse_items (v) VALUES ('probe') RETURNING id::text").Scan(&next); err != nil {
			t.Fatal(err)
		}
		return append(vs, "next id "+next)
	}
	want := []string{"init", "next id 2"}
	var first string
	t.Run("write", func(t *testing.T) {
		db, schema := open(t)
		first = schema
		if got := state(t, db); !slices.Equal(got, want) {
			t.Fatalf("fresh schema holds %v, want %v", got, want)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO reuse_items (v) VALUES ('a'), ('b')"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reused", func(t *testing.T) {
		db, schema := open(t)
		if schema != first {
			t.Fatalf("got schema %s, want %s given back", schema, first)
		}
		if got := state(t, db); !slices.Equal(got, want) {
			t.Fatalf("reused schema holds %v, want %v", got, want)
		}
		if _, err := db.ExecContext(ctx, "ALTER TABLE reuse_items ADD COLUMN extra TEXT"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("altered is dropped", func(t *testing.T) {
		db, schema := open(t)
		if schema == first {
			t.Fatalf("schema %s, altered by the last test, was handed out again", schema)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = ?", first).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("altered schema %s still exists", first)
		}
		if got := state(t, db); !slices.Equal(got, want) {
			t.Fatalf("new schema holds %v, want %v", got, want)
		}
	})
}

// TestPostgresFromLateCommit: a transaction a test left open (a request
// still applying when the test ended) commits after the test's cleanup
// began; the schema handed to the next test holds none of its rows.
func TestPostgresFromLateCommit(t *testing.T) {
	ctx := context.Background()
	init := func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE late_items (id BIGINT PRIMARY KEY)")
		return err
	}
	committed := make(chan error, 1)
	var first string
	t.Run("leaves a transaction", func(t *testing.T) {
		db := PostgresFrom(t, "dbtest.late", init)
		if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&first); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO late_items VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		// Runs before PostgresFrom's cleanup (registered after it): the
		// commit lands while the schema is being reset.
		t.Cleanup(func() {
			go func() {
				time.Sleep(300 * time.Millisecond)
				committed <- tx.Commit()
			}()
		})
	})
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	t.Run("next test", func(t *testing.T) {
		db := PostgresFrom(t, "dbtest.late", init)
		var schema string
		var n int
		if err := db.QueryRowContext(ctx, "SELECT current_schema(), (SELECT count(*) FROM late_items)").Scan(&schema, &n); err != nil {
			t.Fatal(err)
		}
		if schema == first && n != 0 {
			t.Fatalf("schema %s handed out again with %d rows of the last test's late commit", schema, n)
		}
	})
}

// TestPostgresFromChangedDefinitions: each kind of definition change a
// test may make (catalogPrint) has the schema dropped, not handed out
// again; rows alone, even enough for the reset to TRUNCATE the table,
// keep it in the pool.
func TestPostgresFromChangedDefinitions(t *testing.T) {
	ctx := context.Background()
	init := func(ctx context.Context, db *bun.DB) error {
		for _, q := range []string{
			"CREATE TABLE defs_items (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL DEFAULT '')",
			"CREATE INDEX defs_items_v ON defs_items (v)",
			"CREATE FUNCTION defs_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
			"CREATE TRIGGER defs_trg BEFORE INSERT ON defs_items FOR EACH ROW EXECUTE FUNCTION defs_fn()",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		change  []string
		dropped bool
	}{
		{"add column", []string{"ALTER TABLE defs_items ADD COLUMN extra TEXT"}, true},
		{"column default", []string{"ALTER TABLE defs_items ALTER COLUMN v SET DEFAULT 'x'"}, true},
		{"column not null", []string{"ALTER TABLE defs_items ALTER COLUMN v DROP NOT NULL"}, true},
		{"rename column", []string{"ALTER TABLE defs_items RENAME COLUMN v TO w"}, true},
		{"new index", []string{"CREATE UNIQUE INDEX defs_items_u ON defs_items (v, id)"}, true},
		{"dropped index", []string{"DROP INDEX defs_items_v"}, true},
		{"check constraint", []string{"ALTER TABLE defs_items ADD CONSTRAINT defs_v CHECK (v <> 'no')"}, true},
		{"trigger disabled", []string{"ALTER TABLE defs_items DISABLE TRIGGER defs_trg"}, true},
		{"function body", []string{"CREATE OR REPLACE FUNCTION defs_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := 'f'; RETURN NEW; END $$"}, true},
		{"new type", []string{"CREATE TYPE defs_mood AS ENUM ('a', 'b')"}, true},
		{"rows", []string{"INSERT INTO defs_items (v) VALUES ('a')"}, false},
		{"rows the reset truncates", []string{"INSERT INTO defs_items (v) SELECT repeat('x', 200) FROM generate_series(1, 20000)"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "dbtest.defs/" + tc.name
			schema := func(db *bun.DB) string {
				var s string
				if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&s); err != nil {
					t.Fatal(err)
				}
				return s
			}
			var first string
			t.Run("change", func(t *testing.T) {
				db := PostgresFrom(t, key, init)
				first = schema(db)
				for _, q := range tc.change {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
			})
			// Twice: a reset that truncated must leave the schema as the
			// next reset expects it.
			for i := range 2 {
				t.Run(fmt.Sprint("next ", i), func(t *testing.T) {
					db := PostgresFrom(t, key, init)
					got := schema(db)
					if tc.dropped && i == 0 && got == first {
						t.Fatalf("schema %s, changed by %q, was handed out again", got, tc.change)
					}
					if !tc.dropped && got != first {
						t.Fatalf("got schema %s after %q, want %s handed out again", got, tc.change, first)
					}
					var n int
					if err := db.QueryRowContext(ctx, "SELECT count(*) FROM defs_items").Scan(&n); err != nil || n != 0 {
						t.Fatalf("the schema holds %d rows (%v), want none", n, err)
					}
				})
			}
		})
	}
}
