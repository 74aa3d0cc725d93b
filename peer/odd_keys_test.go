package peer_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

func exactCountries(t *testing.T, n *peer.Node) []string {
	t.Helper()
	var cs []Country
	if err := n.DB().NewSelect().Model(&cs).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var ci []City
	if err := n.DB().NewSelect().Model(&ci).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("country %q %s", c.Code, c.Name))
	}
	for _, c := range ci {
		out = append(out, fmt.Sprintf("city %s in %q", c.Name, c.CountryCode))
	}
	slices.Sort(out)
	return out
}

// TestOddTextKeys: rows with unusual text keys (testmodels.OddTextKeys),
// each with a city referencing it (ON UPDATE / ON DELETE CASCADE), written
// on a SQLite node by bun and by SQL with driver arguments, then a third
// of the keys changed, a third deleted, a third updated, and keys changed
// on the peer (SQLite and PostgreSQL), reach both nodes as written, byte
// for byte.
func TestOddTextKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, how := range []string{"bun", "sql"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				t.Parallel()
				a, b := countryNode(t, dbtest.KindSQLite), countryNode(t, kind)
				keys := testmodels.OddTextKeys()
				for i, k := range keys {
					name := fmt.Sprint(i)
					if how == "bun" {
						insert(t, a, &Country{Code: k, Name: name})
						insert(t, a, &City{CountryCode: k, Name: name})
					} else {
						if _, err := a.DB().DB.ExecContext(ctx, "INSERT INTO countries (code, name) VALUES (?, ?)", k, name); err != nil {
							t.Fatal(err)
						}
						if _, err := a.DB().DB.ExecContext(ctx, "INSERT INTO cities (country_code, name) VALUES (?, ?)", k, name); err != nil {
							t.Fatal(err)
						}
					}
				}
				check := func(step string) {
					t.Helper()
					syncBoth(t, a, b)
					syncBoth(t, a, b)
					want := exactCountries(t, a)
					if got := exactCountries(t, b); !slices.Equal(got, want) {
						t.Errorf("%s: b differs:\n only there: %q\n missing: %q", step, minus(got, want), minus(want, got))
					}
				}
				check("insert")
				tick()
				for i, k := range keys {
					var err error
					switch {
					case i%3 == 0:
						_, err = a.DB().DB.ExecContext(ctx, "DELETE FROM countries WHERE code = ?", k)
					case i%3 == 1:
						_, err = a.DB().DB.ExecContext(ctx, "UPDATE countries SET code = ? WHERE code = ?", k+"?'x", k)
					default:
						_, err = a.DB().NewUpdate().Model(&Country{Code: k, Name: "renamed"}).WherePK().Exec(ctx)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				check("update")
				tick()
				for i, k := range keys {
					if i%3 == 2 {
						if _, err := b.DB().ExecContext(ctx, "UPDATE countries SET code = ? WHERE code = ?", k+"b", k); err != nil {
							t.Fatal(err)
						}
					}
				}
				check("b edits")
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
