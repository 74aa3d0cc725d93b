package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

type oddCode struct {
	bun.BaseModel `bun:"table:odd_codes"`
	Code          string `bun:"code,pk"`
	Name          string `bun:"name,notnull"`
}

type oddRef struct {
	bun.BaseModel `bun:"table:odd_refs"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Code          string `bun:"code,notnull"`
	Name          string `bun:"name,notnull"`
}

func createOddCodes(ctx context.Context, db bun.IDB) error {
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if db.Dialect().Name() == dialect.PG {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS odd_codes (code TEXT PRIMARY KEY, name TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS odd_refs (id " + serial + ", code TEXT NOT NULL REFERENCES odd_codes (code) ON DELETE CASCADE ON UPDATE CASCADE, name TEXT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// oddContents lists a database's odd_codes and odd_refs, sorted, with the
// keys quoted (exact bytes).
func oddContents(t *testing.T, db bun.IDB) []string {
	t.Helper()
	ctx := context.Background()
	var codes []oddCode
	if err := db.NewSelect().Model(&codes).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var refs []oddRef
	if err := db.NewSelect().Model(&refs).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range codes {
		out = append(out, fmt.Sprintf("code %q %s", c.Code, c.Name))
	}
	for _, r := range refs {
		out = append(out, fmt.Sprintf("ref %s -> %q", r.Name, r.Code))
	}
	slices.Sort(out)
	return out
}

// TestOddTextKeys: rows with unusual text keys (testmodels.OddTextKeys),
// each with a row referencing it (ON UPDATE / ON DELETE CASCADE), written
// on a node by bun and by SQL with driver arguments, then a third of the
// keys changed, a third deleted, a third updated, reach the server (SQLite
// and PostgreSQL) and the other node as written, byte for byte.
func TestOddTextKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mods := []any{(*oddCode)(nil), (*oddRef)(nil)}
	for _, kind := range dbtest.Kinds {
		for _, how := range []string{"bun", "sql"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				t.Parallel()
				s := synctest.NewServerWith(t, dbtest.Open(t, kind), createOddCodes, mods, nil)
				a := synctest.NewClientWith(t, s, "a", dbtest.Open(t, dbtest.KindSQLite), createOddCodes, mods, nil)
				b := synctest.NewClientWith(t, s, "b", dbtest.Open(t, dbtest.KindSQLite), createOddCodes, mods, nil)
				keys := testmodels.OddTextKeys()
				for i, k := range keys {
					name := fmt.Sprint(i)
					if how == "bun" {
						if _, err := a.DB.NewInsert().Model(&oddCode{Code: k, Name: name}).Exec(ctx); err != nil {
							t.Fatal(err)
						}
						if _, err := a.DB.NewInsert().Model(&oddRef{Code: k, Name: name}).Exec(ctx); err != nil {
							t.Fatal(err)
						}
					} else {
						if _, err := a.DB.DB.ExecContext(ctx, "INSERT INTO odd_codes (code, name) VALUES (?, ?)", k, name); err != nil {
							t.Fatal(err)
						}
						if _, err := a.DB.DB.ExecContext(ctx, "INSERT INTO odd_refs (code, name) VALUES (?, ?)", k, name); err != nil {
							t.Fatal(err)
						}
					}
				}
				check := func(step string) {
					t.Helper()
					if _, err := a.Sync(ctx); err != nil {
						var ve *dbsync.ValueError
						t.Fatalf("%s: a sync: %v (ValueError %v)", step, err, errors.As(err, &ve))
					}
					if _, err := b.Sync(ctx); err != nil {
						t.Fatalf("%s: b sync: %v", step, err)
					}
					want := oddContents(t, a.DB)
					for _, n := range []struct {
						name string
						db   bun.IDB
					}{{"server", s.DB}, {"b", b.DB}} {
						if got := oddContents(t, n.db); !slices.Equal(got, want) {
							t.Errorf("%s: %s differs:\n only there: %q\n missing: %q", step, n.name, minus(got, want), minus(want, got))
						}
					}
				}
				check("insert")
				// Change every other key, delete every third.
				for i, k := range keys {
					var err error
					switch {
					case i%3 == 0:
						_, err = a.DB.DB.ExecContext(ctx, "DELETE FROM odd_codes WHERE code = ?", k)
					case i%3 == 1:
						_, err = a.DB.DB.ExecContext(ctx, "UPDATE odd_codes SET code = ? WHERE code = ?", k+"?'x", k)
					default:
						_, err = a.DB.NewUpdate().Model(&oddCode{Code: k, Name: "renamed"}).WherePK().Exec(ctx)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				check("update")
				for _, n := range []*synctest.Client{a, b} {
					if _, err := n.DB.DB.ExecContext(ctx, "UPDATE odd_codes SET name = name || '+'"); err != nil {
						t.Fatal(err)
					}
				}
				check("both")
			})
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			if len(x) > 80 {
				x = x[:80] + "…"
			}
			out = append(out, x)
		}
	}
	return out
}
