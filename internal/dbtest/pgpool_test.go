package dbtest

import (
	"context"
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
