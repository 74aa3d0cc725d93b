package oplog_test

import (
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/oplog"
)

// emailRow has a text column whose collation ignores case; codeRow a text
// key whose collation ignores case.
type emailRow struct {
	bun.BaseModel `bun:"table:email_rows"`

	ID    int64  `bun:"id,pk,autoincrement"`
	Email string `bun:"email,notnull"`
}

type codeRow struct {
	bun.BaseModel `bun:"table:code_rows"`

	Code string `bun:"code,pk"`
	Name string `bun:"name,notnull"`
}

// A case-only edit under a collation that ignores case (SQLite's NOCASE,
// a nondeterministic ICU collation on PostgreSQL) changes the value: an
// edit of a column is logged as an update, one of the key as a new key
// (the old one's delete and the new one's insert), where the column's =
// would call it no change. The same bytes written again are none.
func TestCaptureCaseOnlyEdits(t *testing.T) {
	t.Parallel()
	const ci = "CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
	cases := []struct {
		name         string
		model        any
		sqlite, pg   []string // the table
		writes, want []string
	}{
		{
			name:   "column",
			model:  (*emailRow)(nil),
			sqlite: []string{"CREATE TABLE email_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT COLLATE NOCASE NOT NULL)"},
			pg:     []string{ci, "CREATE TABLE email_rows (id BIGSERIAL PRIMARY KEY, email TEXT COLLATE case_insensitive NOT NULL)"},
			writes: []string{
				"INSERT INTO email_rows (email) VALUES ('bob@example.com')",
				"UPDATE email_rows SET email = 'Bob@Example.com'",
				"UPDATE email_rows SET email = 'Bob@Example.com'",
			},
			want: []string{"email_rows:i:1", "email_rows:u:1"},
		},
		{
			name:   "key",
			model:  (*codeRow)(nil),
			sqlite: []string{"CREATE TABLE code_rows (code TEXT COLLATE NOCASE PRIMARY KEY, name TEXT NOT NULL)"},
			pg:     []string{ci, "CREATE TABLE code_rows (code TEXT COLLATE case_insensitive PRIMARY KEY, name TEXT NOT NULL)"},
			writes: []string{
				"INSERT INTO code_rows (code, name) VALUES ('abc', 'x')",
				"UPDATE code_rows SET code = 'ABC'",
				"UPDATE code_rows SET code = 'ABC'",
			},
			want: []string{"code_rows:i:abc", "code_rows:d:abc", "code_rows:i:ABC"},
		},
	}
	for _, tc := range cases {
		for _, kind := range dbtest.Kinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				db := dbtest.Open(t, kind)
				ctx := t.Context()
				ddl := tc.sqlite
				if kind == dbtest.KindPostgres {
					ddl = tc.pg
				}
				for _, q := range ddl {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				reg, err := dbsync.Track(db, tc.model)
				if err != nil {
					t.Fatal(err)
				}
				b := &bundle{db: db}
				if b.reg, err = oplog.Install(ctx, db, reg, nil); err != nil {
					t.Fatal(err)
				}
				for _, q := range tc.writes {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				if got := b.logged(t); !slices.Equal(got, tc.want) {
					t.Fatalf("logged %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// TestRebuildReferencingTable: the application rebuilds a table that
// references a tracked table's key with ON UPDATE CASCADE (SQLite's way
// to change a column: new table, copy, DROP TABLE, rename), outside
// dbsync. No capture trigger names another table than its own: one that
// did (respelling the referencing rows on a case-only edit of the key)
// made SQLite refuse the rename ("error in trigger …: no such table").
func TestRebuildReferencingTable(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			ctx := t.Context()
			coll := "COLLATE NOCASE"
			var ddl []string
			if kind == dbtest.KindPostgres {
				coll = "COLLATE case_insensitive"
				ddl = append(ddl, "CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
			}
			ddl = append(ddl,
				"CREATE TABLE code_rows (code TEXT "+coll+" PRIMARY KEY, name TEXT NOT NULL)",
				"CREATE TABLE code_refs (id INTEGER PRIMARY KEY, code TEXT "+coll+" REFERENCES code_rows (code) ON UPDATE CASCADE)")
			run := func(qs ...string) {
				t.Helper()
				for _, q := range qs {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
			}
			run(ddl...)
			reg, err := dbsync.Track(db, (*codeRow)(nil))
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle{db: db}
			if b.reg, err = oplog.Install(ctx, db, reg, nil); err != nil {
				t.Fatal(err)
			}
			run("INSERT INTO code_rows (code, name) VALUES ('abc', 'x')",
				"INSERT INTO code_refs (id, code) VALUES (1, 'abc')",
				"CREATE TABLE code_refs_new (id INTEGER PRIMARY KEY, code TEXT "+coll+" REFERENCES code_rows (code) ON UPDATE CASCADE, note TEXT)",
				"INSERT INTO code_refs_new (id, code) SELECT id, code FROM code_refs",
				"DROP TABLE code_refs",
				"ALTER TABLE code_refs_new RENAME TO code_refs",
				"UPDATE code_rows SET code = 'ABC'")
			want := []string{"code_rows:i:abc", "code_rows:d:abc", "code_rows:i:ABC"}
			if got := b.logged(t); !slices.Equal(got, want) {
				t.Fatalf("logged %q, want %q", got, want)
			}
		})
	}
}
