package dialect_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// RefusedValue recognizes each refusal on both databases, from the
// database's real errors, and nothing else.
func TestRefusedValue(t *testing.T) {
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			db := dbtest.Open(t, kind)
			if _, err := db.ExecContext(ctx, `CREATE TABLE refusals (id BIGINT PRIMARY KEY, name VARCHAR(3) NOT NULL,
  n SMALLINT, pos BIGINT CONSTRAINT positive CHECK (pos > 0), doc JSONB)`); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				insert      string
				ok          bool
				what, table string
				column      string
			}{
				{"INSERT INTO refusals (id, name) VALUES (1, NULL)", true, "no value (null) for a NOT NULL column", "refusals", "name"},
				{"INSERT INTO refusals (id, name, pos) VALUES (2, 'a', -1)", true, "a value the CHECK constraint positive refuses", "", ""},
				{"INSERT INTO refusals (id, name) VALUES (3, 'a'), (3, 'b')", false, "", "", ""},
				{"INSERT INTO refusals (id, name) VALUES (4, 'toolong')", kind == dbtest.KindPostgres, "a text longer than its column allows", "", ""},
				{"INSERT INTO refusals (id, name, n) VALUES (5, 'a', 70000)", kind == dbtest.KindPostgres, "a number out of its column's range", "", ""},
				// bun's literal of a driver.Valuer's int64 (a custom type's)
				// into a jsonb column; SQLite takes it.
				{"INSERT INTO refusals (id, name, doc) VALUES (6, 'a', 7)", kind == dbtest.KindPostgres, "a value of another type than its column's", "", ""},
				{"INSERT INTO refusals (id, name, doc) VALUES (7, 'a', 'not json')", kind == dbtest.KindPostgres, "a value its column's type does not accept", "", ""},
			} {
				_, err := db.ExecContext(ctx, c.insert)
				r, ok := dialect.RefusedValue(err)
				if ok != c.ok || (ok && (r.What != c.what || (c.column != "" && (r.Table != c.table || r.Column != c.column)))) {
					t.Errorf("%s: %v: RefusedValue = %+v, %v; want %q %s.%s, %v", c.insert, err, r, ok, c.what, c.table, c.column, c.ok)
				}
			}
			if _, ok := dialect.RefusedValue(errors.New("NOT NULL")); ok {
				t.Error("RefusedValue recognized a bare text")
			}
			if _, ok := dialect.RefusedValue(nil); ok {
				t.Error("RefusedValue(nil)")
			}
		})
	}
}
