package oplog_test

import (
	"slices"
	"strings"
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

// codeRef references a codeRow with ON UPDATE CASCADE.
type codeRef struct {
	bun.BaseModel `bun:"table:code_refs"`

	ID   string `bun:"id,pk"`
	Code string `bun:"code,notnull"`
}

// TestCaptureCaseOnlyKeyEditCascades: a case-only edit of a key under
// a collation that ignores case moves the rows referencing it with ON
// UPDATE CASCADE to the new spelling, tracked (their updates logged) or
// not, as PostgreSQL's cascade does, which compares the keys byte for
// byte. SQLite's runs only when the keys differ under the collation:
// before, the rows kept "abc" while the log deleted it (the server
// refused the push, 409 foreign_key, at every sync). A row already
// spelled as the new key is not written; a key change the collation
// sees runs SQLite's own cascade, logged once.
func TestCaptureCaseOnlyKeyEditCascades(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			ctx := t.Context()
			coll := "NOCASE"
			if kind == dbtest.KindPostgres {
				coll = "case_insensitive"
				if _, err := db.ExecContext(ctx, "CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"); err != nil {
					t.Fatal(err)
				}
			}
			ddl := []string{
				"CREATE TABLE code_rows (code TEXT COLLATE " + coll + " PRIMARY KEY, name TEXT NOT NULL)",
				"CREATE TABLE code_refs (id TEXT PRIMARY KEY, code TEXT COLLATE " + coll + " NOT NULL REFERENCES code_rows (code) ON UPDATE CASCADE)",
				// Untracked, referencing the key by default.
				"CREATE TABLE code_notes (id TEXT PRIMARY KEY, code TEXT COLLATE " + coll + " REFERENCES code_rows ON UPDATE CASCADE ON DELETE CASCADE)",
			}
			if kind == dbtest.KindSQLite {
				// Left out of the foreign keys read at the install.
				ddl = append(ddl, "CREATE VIRTUAL TABLE code_search USING fts5(body)")
			}
			for _, q := range ddl {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			reg, err := dbsync.Track(db, (*codeRow)(nil), (*codeRef)(nil))
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle{db: db}
			if b.reg, err = oplog.Install(ctx, db, reg, nil); err != nil {
				t.Fatal(err)
			}
			exec := func(qs ...string) {
				t.Helper()
				for _, q := range qs {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
			}
			contents := func() string {
				t.Helper()
				var refs, notes []string
				if err := db.NewRaw("SELECT id || '>' || code FROM code_refs ORDER BY id").Scan(ctx, &refs); err != nil {
					t.Fatal(err)
				}
				if err := db.NewRaw("SELECT id || '>' || code FROM code_notes ORDER BY id").Scan(ctx, &notes); err != nil {
					t.Fatal(err)
				}
				return strings.Join(append(refs, notes...), ",")
			}
			check := func(step, want string, log ...string) {
				t.Helper()
				got := b.logged(t)
				slices.Sort(got) // PostgreSQL's cascade runs before the key's capture, SQLite's respelling after
				slices.Sort(log)
				if !slices.Equal(got, log) {
					t.Errorf("%s: logged %q, want %q", step, got, log)
				}
				if c := contents(); c != want {
					t.Errorf("%s: rows %s, want %s", step, c, want)
				}
				b.clear(t)
			}
			exec("INSERT INTO code_rows (code, name) VALUES ('abc', 'x'), ('def', 'y')",
				"INSERT INTO code_refs (id, code) VALUES ('r1', 'abc'), ('r2', 'Abc'), ('r3', 'def')",
				"INSERT INTO code_notes (id, code) VALUES ('n1', 'abc')")
			b.clear(t)
			exec("UPDATE code_rows SET code = 'Abc' WHERE code = 'abc'")
			check("case-only edit", "r1>Abc,r2>Abc,r3>def,n1>Abc",
				"code_rows:d:abc", "code_rows:i:Abc", "code_refs:u:r1")
			exec("UPDATE code_rows SET code = 'xyz' WHERE code = 'abc'")
			check("new key", "r1>xyz,r2>xyz,r3>def,n1>xyz",
				"code_rows:d:Abc", "code_rows:i:xyz", "code_refs:u:r1", "code_refs:u:r2")
		})
	}
}
