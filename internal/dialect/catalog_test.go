package dialect_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestCatalogForeignKeys: both databases report each foreign key with all
// its columns and its parent's, a key naming no parent columns with the
// parent's primary key; ForeignKeys keeps those of one column.
func TestCatalogForeignKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			for _, q := range []string{
				`CREATE TABLE fk_parents (id BIGINT PRIMARY KEY, code VARCHAR(10) NOT NULL UNIQUE)`,
				`CREATE TABLE fk_pairs (a BIGINT, b BIGINT, PRIMARY KEY (a, b))`,
				`CREATE TABLE fk_children (id BIGINT PRIMARY KEY,
  named BIGINT REFERENCES fk_parents (id) ON DELETE CASCADE,
  implied BIGINT REFERENCES fk_parents,
  code VARCHAR(10) REFERENCES fk_parents (code) ON DELETE SET NULL,
  pa BIGINT, pb BIGINT,
  CONSTRAINT pair FOREIGN KEY (pa, pb) REFERENCES fk_pairs (a, b),
  CONSTRAINT pair_implied FOREIGN KEY (pb, pa) REFERENCES fk_pairs)`,
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			all, err := dialect.CatalogForeignKeys(ctx, db, []string{"fk_children", "fk_parents"})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, fk := range all {
				got = append(got, fk.Table+"("+strings.Join(fk.Columns, ",")+") -> "+fk.RefTable+"("+strings.Join(fk.RefColumns, ",")+") "+fk.OnDelete)
			}
			slices.Sort(got)
			want := []string{
				"fk_children(code) -> fk_parents(code) SET NULL",
				"fk_children(implied) -> fk_parents(id) NO ACTION",
				"fk_children(named) -> fk_parents(id) CASCADE",
				"fk_children(pa,pb) -> fk_pairs(a,b) NO ACTION",
				"fk_children(pb,pa) -> fk_pairs(a,b) NO ACTION",
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("CatalogForeignKeys:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			one, err := dialect.ForeignKeys(ctx, db, []string{"fk_children"})
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, fk := range one {
				got = append(got, fk.Table+"."+fk.Column+" -> "+fk.RefTable+"."+fk.RefColumn+" "+fk.OnDelete)
			}
			slices.Sort(got)
			want = []string{
				"fk_children.code -> fk_parents.code SET NULL",
				"fk_children.implied -> fk_parents.id NO ACTION",
				"fk_children.named -> fk_parents.id CASCADE",
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ForeignKeys:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
