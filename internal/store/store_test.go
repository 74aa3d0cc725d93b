package store_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestLoad reads rows by key on both databases, through range scans (dense
// integer keys) and IN lists (sparse keys), skipping missing keys.
func TestLoad(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		todos := todosTable(t, db)
		// Rows -300..3000 except every seventh (and 0).
		var rows []reflect.Value
		for i := -300; i <= 3000; i++ {
			if i%7 != 0 {
				rows = append(rows, reflect.ValueOf(&testmodels.Todo{ID: int64(i), ListID: 1, Title: fmt.Sprint("t", i)}).Elem())
			}
		}
		if err := store.Write(ctx, db, todos, rows, false); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			keys []string
		}{
			{"dense", keyRange(1, 3000, 1)},
			{"dense_subset", keyRange(500, 2200, 1)},
			{"sparse", keyRange(1, 3000, 13)},
			{"runs", slices.Concat(keyRange(1, 200, 1), keyRange(300, 1900, 29), keyRange(2000, 2900, 2), keyRange(2901, 2950, 1))},
			{"few", []string{"1", "7", "2999", "5000"}},
			{"negative", keyRange(-300, -1, 1)},
			{"across_zero", slices.Concat(keyRange(-150, 150, 1), keyRange(-150, -100, 1))},
			{"none", nil},
		}
		for _, tc := range cases {
			var got []string
			err := store.Load(ctx, db, todos, tc.keys, func(strct reflect.Value) error {
				got = append(got, todos.Codec().KeyOf(strct))
				if title := strct.FieldByName("Title").String(); title != "t"+todos.Codec().KeyOf(strct) {
					t.Errorf("%s: row %s has title %q", tc.name, todos.Codec().KeyOf(strct), title)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var want []string
			for _, k := range tc.keys {
				var n int
				fmt.Sscan(k, &n)
				if n%7 != 0 && n <= 3000 {
					want = append(want, k)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			want = slices.Compact(want) // keys asked twice
			if !slices.Equal(got, want) {
				t.Fatalf("%s: loaded %d rows, want %d", tc.name, len(got), len(want))
			}
			// Existing finds the same keys, by ranges and IN lists.
			found, err := store.Existing(ctx, db, todos, tc.keys)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			got = slices.Sorted(maps.Keys(found))
			if !slices.Equal(got, want) {
				t.Fatalf("%s: found %d keys, want %d", tc.name, len(got), len(want))
			}
			// ExistingWhere keeps to its condition on both paths.
			found, err = store.ExistingWhere(ctx, db, todos, tc.keys, bun.Safe("todos.id % 2 = 0"))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var even []string
			for _, k := range want {
				var n int
				fmt.Sscan(k, &n)
				if n%2 == 0 {
					even = append(even, k)
				}
			}
			got = slices.Sorted(maps.Keys(found))
			if !slices.Equal(got, even) {
				t.Fatalf("%s: found %d keys meeting the condition, want %d", tc.name, len(got), len(even))
			}
		}
	})
}

// TestLoadNonCanonical: keys not written as their integer's canonical
// text ("08", "+9") are read, beside a run of canonical keys, and each row
// is handed over once even when a canonical key names it too.
func TestLoadNonCanonical(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		todos := todosTable(t, db)
		var rows []reflect.Value
		for i := 1; i <= 300; i++ {
			rows = append(rows, reflect.ValueOf(&testmodels.Todo{ID: int64(i), ListID: 1, Title: fmt.Sprint("t", i)}).Elem())
		}
		if err := store.Write(ctx, db, todos, rows, false); err != nil {
			t.Fatal(err)
		}
		keys := slices.Concat(keyRange(1, 200, 1), []string{"08", "+9", "0250"})
		seen := map[string]int{}
		if err := store.Load(ctx, db, todos, keys, func(strct reflect.Value) error {
			seen[todos.Codec().KeyOf(strct)]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, k := range append(keyRange(1, 200, 1), "250") {
			if seen[k] != 1 {
				t.Errorf("row %s handed over %d times, want 1", k, seen[k])
			}
		}
		if len(seen) != 201 {
			t.Errorf("%d rows handed over, want 201", len(seen))
		}
	})
}

// trackModels creates the test models' tables on db and tracks them.
func trackModels(tb testing.TB, db *bun.DB) *dbsync.Registry {
	tb.Helper()
	if err := testmodels.CreateSchema(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// todosTable installs the test models on db, with list 1 for todos to
// reference, and returns the tracked todos table.
func todosTable(tb testing.TB, db *bun.DB) *dbsync.Table {
	tb.Helper()
	reg := trackModels(tb, db)
	if _, err := db.NewInsert().Model(&testmodels.List{ID: 1, Name: "l"}).Exec(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return reg.Table("todos")
}

func keyRange(from, to, step int) []string {
	var out []string
	for i := from; i <= to; i += step {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

// TestScanPages: rows come in key order, each once, whatever the pages'
// sizes and wherever the caller ends a page early (as a reader bounding
// its lines in bytes does): the next page starts after the last row
// handed over, and a condition keeps its rows only.
func TestScanPages(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		todos := todosTable(t, db)
		var rows []reflect.Value
		for i := 1; i <= 50; i++ {
			rows = append(rows, reflect.ValueOf(&testmodels.Todo{ID: int64(i), ListID: 1, Title: fmt.Sprint("t", i), Done: i%3 == 0}).Elem())
		}
		if err := store.Write(ctx, db, todos, rows, false); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			size int
			stop func(n int) bool // end the page after the nth row (from 1)
			cond bool             // only done todos
			want []string
		}{
			{name: "whole pages", size: 7, stop: func(int) bool { return false }, want: keyRange(1, 50, 1)},
			{name: "pages ended early", size: 7, stop: func(n int) bool { return n%3 == 0 }, want: keyRange(1, 50, 1)},
			{name: "every row a page", size: 100, stop: func(int) bool { return true }, want: keyRange(1, 50, 1)},
			{name: "pages of one", size: 0, stop: func(int) bool { return false }, want: keyRange(1, 50, 1)},
			{name: "condition", size: 4, stop: func(n int) bool { return n%5 == 0 }, cond: true, want: keyRange(3, 48, 3)},
		}
		for _, tc := range cases {
			var got []string
			var cond schema.QueryAppender
			if tc.cond {
				cond = bun.Safe(string(todos.Schema().SQLAlias) + ".done")
			}
			pages, inPage := 0, 0
			err := store.ScanPages(ctx, db, todos, cond, func() int { return tc.size }, func(strct reflect.Value) (bool, error) {
				got = append(got, todos.Codec().KeyOf(strct))
				inPage++
				return !tc.stop(len(got)), nil
			}, func() error {
				if inPage == 0 || inPage > max(1, tc.size) {
					t.Errorf("%s: a page of %d rows, want 1..%d", tc.name, inPage, max(1, tc.size))
				}
				pages++
				inPage = 0
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: rows %v, want %v", tc.name, got, tc.want)
			}
			if pages == 0 {
				t.Errorf("%s: no page done", tc.name)
			}
		}
	})
}
