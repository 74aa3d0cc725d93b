package dialect_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestCanonUUID: the SQL of CanonUUID yields the canonical text of every
// form uuid.Parse accepts, and NULL (SQLite) or an error (PostgreSQL) for
// what is not a UUID, on a value and on a column of a table.
func TestCanonUUID(t *testing.T) {
	t.Parallel()
	u := uuid.MustParse("0f8E3a1C-2b4d-4e6f-8a9b-0c1d2e3f4a5b")
	want := u.String()
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"canonical", want, true},
		{"upper case", strings.ToUpper(want), true},
		{"no dashes", strings.ReplaceAll(want, "-", ""), true},
		{"braces", "{" + strings.ToUpper(want) + "}", true},
		{"urn", "urn:uuid:" + want, true},
		{"upper urn", "URN:UUID:" + strings.ToUpper(want), true},
		{"too short", want[:35], false},
		{"not hex", "g" + want[1:], false},
		{"empty", "", false},
	}
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, "CREATE TABLE ids (id TEXT)"); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if _, err := db.ExecContext(ctx, "DELETE FROM ids"); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, "INSERT INTO ids (id) VALUES (?)", c.in); err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{
					"SELECT " + dialect.CanonUUID(db, "'"+c.in+"'"), // (no quote in the inputs)
					"SELECT " + dialect.CanonUUID(db, "id") + " FROM ids",
				} {
					var got sql.NullString
					err := db.QueryRowContext(ctx, q).Scan(&got)
					switch {
					case c.ok && (err != nil || got.String != want):
						t.Fatalf("%s: %q, %v; want %q", q, got.String, err, want)
					case !c.ok && err == nil && got.Valid:
						t.Fatalf("%s: %q, want NULL or an error", q, got.String)
					}
				}
			})
		}
	})
}
