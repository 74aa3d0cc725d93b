package store_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// BenchmarkLoad reads 10,000 rows by key, 500 keys per query.
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	db := dbtest.SQLite(b)
	t := todosTable(b, db)
	rows := make([]testmodels.Todo, 10000)
	keys := make([]string, len(rows))
	for i := range rows {
		rows[i] = testmodels.Todo{ID: int64(i + 1), ListID: 1, Title: fmt.Sprint("todo ", i)}
		keys[i] = fmt.Sprint(i + 1)
	}
	vals := make([]reflect.Value, len(rows))
	for i := range rows {
		vals[i] = reflect.ValueOf(&rows[i]).Elem()
	}
	if err := store.Write(ctx, db, t, vals, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := store.Load(ctx, db, t, keys, func(reflect.Value) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != len(keys) {
			b.Fatalf("loaded %d", n)
		}
	}
}
