package oplog_test

import (
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/oplog"
)

type codeRow struct {
	bun.BaseModel `bun:"table:code_rows"`

	Code string `bun:"code,pk"`
	Name string `bun:"name,notnull"`
}

// A case-only edit of a text key under a collation that ignores case is
// a new key: logged as the old key's delete and the new one's insert.
func TestCaptureCaseOnlyKeyEdit(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			ctx := t.Context()
			ddl := []string{"CREATE TABLE code_rows (code TEXT COLLATE NOCASE PRIMARY KEY, name TEXT NOT NULL)"}
			if kind == dbtest.KindPostgres {
				ddl = []string{
					"CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
					"CREATE TABLE code_rows (code TEXT COLLATE case_insensitive PRIMARY KEY, name TEXT NOT NULL)",
				}
			}
			for _, q := range ddl {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			reg, err := dbsync.Track(db, (*codeRow)(nil))
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle{db: db}
			if b.reg, err = oplog.Install(ctx, db, reg, nil); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"INSERT INTO code_rows (code, name) VALUES ('abc', 'x')",
				"UPDATE code_rows SET code = 'ABC'", // the key's bytes change
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := b.logged(t), []string{"code_rows:i:abc", "code_rows:d:abc", "code_rows:i:ABC"}; !slices.Equal(got, want) {
				t.Fatalf("logged %q, want %q", got, want)
			}
		})
	}
}
