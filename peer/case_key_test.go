package peer_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// A case-only edit of a text key under a collation that ignores case
// (SQLite's NOCASE, a nondeterministic ICU collation on PostgreSQL) is a
// new identity, as oplog's capture takes it: its peers end with the new
// spelling. The same bytes written again are no new version.
func TestCaseOnlyKeyEdit(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*testmodels.CaseCode)(nil)}
			a := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			b := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			exec(t, a, "INSERT INTO case_codes (code, name) VALUES ('abc', 'x')")
			syncBoth(t, a, b)
			exec(t, a, "UPDATE case_codes SET code = 'ABC'")
			syncBoth(t, a, b)
			seq := func() int64 {
				t.Helper()
				var n int64
				if err := a.DB().QueryRowContext(ctx, "SELECT seq FROM sync_lww_node WHERE id = 1").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := seq()
			exec(t, a, "UPDATE case_codes SET code = 'ABC'")
			if after := seq(); after != before {
				t.Fatalf("the same key written again ticked a's sequence from %d to %d", before, after)
			}
			for name, n := range map[string]*peer.Node{"a": a, "b": b} {
				var rows []string
				if err := n.DB().NewRaw("SELECT code || ' ' || name FROM case_codes").Scan(ctx, &rows); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(rows, []string{"ABC x"}) {
					t.Fatalf("%s holds %q, want [ABC x]", name, rows)
				}
			}
		})
	}
}

// TestConcurrentKeySpellings: two nodes insert "abc" and "ABC" under a
// key collation that ignores case. Identities compare byte for byte:
// they are two rows, which neither node's table can hold both of. Each
// sync fails with ErrConstraint naming the keys, nothing written, until
// one node deletes or renames its row; then the nodes converge. Before,
// each node's apply upserted the other's row onto its own (the other's
// values, its own key) and Sync succeeded: a held "abc", b "ABC", for
// ever; and the delete of "ABC" then deleted a's "abc" too.
func TestConcurrentKeySpellings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, fix string
		want      []string
	}{
		{"deleted", "DELETE FROM case_codes WHERE code = 'ABC'", []string{"abc a"}},
		{"renamed", "UPDATE case_codes SET code = 'abd' WHERE code = 'ABC'", []string{"abc a", "abd b"}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				models := []any{(*testmodels.CaseCode)(nil)}
				a := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
				b := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
				exec(t, a, "INSERT INTO case_codes (code, name) VALUES ('abc', 'a')")
				tick()
				exec(t, b, "INSERT INTO case_codes (code, name) VALUES ('ABC', 'b')")
				for _, step := range []struct {
					name string
					from *peer.Node
					to   *peer.Node
				}{{"a syncs with b", a, b}, {"b syncs with a", b, a}} {
					if _, err := step.from.Sync(ctx, step.to.AsPeer()); !errors.Is(err, peer.ErrConstraint) {
						t.Fatalf("%s: %v, want peer.ErrConstraint", step.name, err)
					}
				}
				wantCodes(t, "a after the refused syncs", a, []string{"abc a"})
				wantCodes(t, "b after the refused syncs", b, []string{"ABC b"})
				tick()
				exec(t, b, tc.fix)
				syncBoth(t, a, b)
				syncBoth(t, a, b)
				wantCodes(t, "a", a, tc.want)
				wantCodes(t, "b", b, tc.want)
				sameDigests(t, a, b)
			})
		}
	}
}

// TestKeySpellingsOneBatch: a node whose key column compares byte for
// byte holds "abc" and "ABC"; its peer's column ignores case. Sent in one
// batch, the two rows fail the sync with ErrConstraint naming them,
// nothing written, from SQLite (whose upsert wrote them as one row, the
// second's values under the first's key, and Sync succeeded) and from
// PostgreSQL (which refused the upsert in its own words).
func TestKeySpellingsOneBatch(t *testing.T) {
	t.Parallel()
	bytewise := func(ctx context.Context, db bun.IDB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS case_codes (code TEXT PRIMARY KEY, name TEXT NOT NULL)")
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*testmodels.CaseCode)(nil)}
			a := synctest.NewTemplateNode(t, dbtest.KindSQLite, "case_codes_bytewise", bytewise, models, nil)
			b := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			exec(t, a, "INSERT INTO case_codes (code, name) VALUES ('abc', 'a'), ('ABC', 'b')")
			if _, err := b.Sync(ctx, a.AsPeer()); !errors.Is(err, peer.ErrConstraint) {
				t.Fatalf("b syncs with a: %v, want peer.ErrConstraint", err)
			}
			wantCodes(t, "b", b, nil)
		})
	}
}

func wantCodes(t *testing.T, step string, n *peer.Node, want []string) {
	t.Helper()
	var rows []string
	if err := n.DB().NewRaw("SELECT code || ' ' || name FROM case_codes ORDER BY code").Scan(ctx, &rows); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("%s holds %q, want %q", step, rows, want)
	}
}

// createCaseCountries is createCountries with a country code whose
// collation ignores case (SQLite's NOCASE, a nondeterministic ICU
// collation on PostgreSQL).
func createCaseCountries(ctx context.Context, db bun.IDB) error {
	serial, coll := "INTEGER PRIMARY KEY AUTOINCREMENT", "NOCASE"
	if db.Dialect().Name() == dialect.PG {
		serial, coll = "BIGSERIAL PRIMARY KEY", "case_insensitive"
		if _, err := db.ExecContext(ctx, "CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"); err != nil {
			return err
		}
	}
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS countries (code TEXT COLLATE " + coll + " PRIMARY KEY, name TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS cities (id " + serial + ", country_code TEXT NOT NULL REFERENCES countries (code) ON DELETE CASCADE ON UPDATE CASCADE, name TEXT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// caseCountryNode is a node of countries whose code's collation ignores
// case (createCaseCountries) and their cities.
func caseCountryNode(t *testing.T, kind string, cfg *peer.Config) *peer.Node {
	t.Helper()
	return synctest.NewTemplateNode(t, kind, "case_countries", createCaseCountries, []any{(*Country)(nil), (*City)(nil)}, cfg)
}

// seedFrance inserts the country "fr" and its city Paris on n.
func seedFrance(t *testing.T, n *peer.Node) {
	t.Helper()
	insert(t, n, &Country{Code: "fr", Name: "France"})
	insert(t, n, &City{CountryCode: "fr", Name: "Paris"})
}

// TestCaseOnlyKeyEditWithChildren: a case-only edit of a text key under a
// collation that ignores case, of a row that other rows reference, comes
// to the peer as the delete of "fr" and the write of "FR" in one batch:
// the peer respells its row in place, and the cities referencing it stay
// (as they reference it on the node that edited the key: SQLite's ON
// UPDATE CASCADE leaves them as they are, PostgreSQL's follows). Before,
// the delete rule and the database's ON DELETE CASCADE deleted the cities
// (and, on PostgreSQL, the late delete of "fr" the row "FR" too), and the
// cities' tombstones deleted them on the node that edited the key: rows
// lost on every node, Sync succeeding.
func TestCaseOnlyKeyEditWithChildren(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := caseCountryNode(t, kind, nil)
			b := caseCountryNode(t, kind, nil)
			seedFrance(t, a)
			syncBoth(t, a, b)
			tick()
			exec(t, a, "UPDATE countries SET code = 'FR' WHERE code = 'fr'")
			syncBoth(t, a, b)
			want := countryContents(t, a)
			if len(want) != 2 || want[1] != "country FR France" {
				t.Fatalf("a holds %q, want Paris and France as FR", want)
			}
			wantCountries(t, "case-only edit", want, a, b)
			tick()
			exec(t, b, "UPDATE countries SET code = 'Fr' WHERE code = 'FR'")
			insert(t, b, &City{CountryCode: "Fr", Name: "Lyon"})
			syncBoth(t, b, a)
			want = countryContents(t, b)
			if len(want) != 3 || want[2] != "country Fr France" {
				t.Fatalf("b holds %q, want Lyon, Paris and France as Fr", want)
			}
			wantCountries(t, "case-only edit on b", want, a, b)
			tick()
			exec(t, a, "DELETE FROM countries WHERE code = 'Fr'")
			syncBoth(t, a, b)
			wantCountries(t, "delete", nil, a, b)
		})
	}
}
