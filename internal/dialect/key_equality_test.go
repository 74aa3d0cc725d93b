package dialect_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestKeyEquality: a key column that compares text byte for byte gets no
// expression; one that does not (a collation that ignores case or
// trailing blanks, char(n) on PostgreSQL) gets one under which a stored
// key matches exactly the texts the column takes for it.
func TestKeyEquality(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type column struct {
		table, def string
		loose      bool
		// same and other: texts the column takes, and does not take,
		// for the stored key "abc".
		same, other []string
	}
	byKind := map[string][]column{
		dbtest.KindSQLite: {
			{table: "keq_binary", def: "TEXT PRIMARY KEY", other: []string{"ABC", "abc "}},
			{table: "keq_nocase", def: "TEXT COLLATE NOCASE PRIMARY KEY", loose: true, same: []string{"ABC", "aBc"}, other: []string{"abd", "abc "}},
			{table: "keq_rtrim", def: "TEXT COLLATE RTRIM PRIMARY KEY", loose: true, same: []string{"abc  "}, other: []string{"ABC"}},
			{table: "keq_unique", def: "TEXT COLLATE NOCASE NOT NULL UNIQUE", loose: true, same: []string{"ABC"}, other: []string{"abd"}},
		},
		dbtest.KindPostgres: {
			{table: "keq_text", def: "TEXT PRIMARY KEY", other: []string{"ABC", "abc "}},
			{table: "keq_varchar", def: "VARCHAR(10) PRIMARY KEY", other: []string{"ABC"}},
			{table: "keq_c", def: `TEXT COLLATE "C" PRIMARY KEY`, other: []string{"ABC"}},
			{table: "keq_icu", def: "TEXT COLLATE keq_case_insensitive PRIMARY KEY", loose: true, same: []string{"ABC", "aBc"}, other: []string{"abd", "abc "}},
			{table: "keq_char", def: "CHAR(5) PRIMARY KEY", loose: true, same: []string{"abc  "}, other: []string{"ABC"}},
		},
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			if kind == dbtest.KindPostgres {
				if _, err := db.ExecContext(ctx, "CREATE COLLATION keq_case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range byKind[kind] {
				for _, q := range []string{
					fmt.Sprintf("CREATE TABLE %s (k %s)", c.table, c.def),
					fmt.Sprintf("INSERT INTO %s (k) VALUES ('abc')", c.table),
				} {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				eq, err := dialect.KeyEquality(ctx, db, c.table, "k")
				if err != nil {
					t.Fatal(err)
				}
				if (eq != "") != c.loose {
					t.Fatalf("%s: %q, want loose %v", c.table, eq, c.loose)
				}
				if eq == "" {
					eq = "%s"
				}
				// The texts the column finds the row by are those the
				// expression matches the stored key with.
				for _, text := range append(append([]string{"abc"}, c.same...), c.other...) {
					var byColumn, byExpr int
					if err := db.NewRaw(fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE k = ?", c.table), text).Scan(ctx, &byColumn); err != nil {
						t.Fatal(err)
					}
					q := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s IN (?)", c.table, fmt.Sprintf(eq, "CAST(k AS TEXT)"))
					if err := db.NewRaw(q, text).Scan(ctx, &byExpr); err != nil {
						t.Fatalf("%s: %s: %v", c.table, q, err)
					}
					want := 0
					if text == "abc" || slices.Contains(c.same, text) {
						want = 1
					}
					if byColumn != want || byExpr != want {
						t.Fatalf("%s: %q finds %d row(s) by the column, %d by %q, want %d", c.table, text, byColumn, byExpr, eq, want)
					}
				}
			}
			// A table or column the catalog does not hold: byte for byte.
			for _, tc := range [][2]string{{"keq_none", "k"}, {byKind[kind][0].table, "none"}} {
				if eq, err := dialect.KeyEquality(ctx, db, tc[0], tc[1]); err != nil || eq != "" {
					t.Fatalf("%s.%s: %q, %v, want \"\"", tc[0], tc[1], eq, err)
				}
			}
		})
	}
}
