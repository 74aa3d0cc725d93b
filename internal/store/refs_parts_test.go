package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestSettler: an apply in parts, in one transaction with the foreign
// key checks waiting: a part referencing a row a later part writes is
// settled at the end; a reference to a row no part writes, and a row
// deleted by a later part while a written row (found present before)
// still references it (where nothing cascades), are refused.
func TestSettler(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		reg := trackModels(t, db)
		lists, todos := reg.Table("lists"), reg.Table("todos")
		if dialect.MustOf(db) == dialect.Postgres {
			// As server.New makes it (store.AdoptForeignKeys): ApplyTx
			// defers the check to commit.
			if _, err := db.ExecContext(ctx, "ALTER TABLE todos ALTER CONSTRAINT todos_list_id_fkey DEFERRABLE INITIALLY IMMEDIATE"); err != nil {
				t.Fatal(err)
			}
		}
		// part writes rows of one table and records them in a Settler.
		part := func(tx bun.Tx, s *store.Settler, t2 *dbsync.Table, rows ...any) {
			t.Helper()
			vals := make([]reflect.Value, len(rows))
			tc := &store.Touched{}
			for i, r := range rows {
				vals[i] = reflect.ValueOf(r).Elem()
				tc.WroteRow(reg, t2, vals[i])
			}
			if err := store.Write(ctx, tx, t2, vals, true); err != nil {
				t.Fatal(err)
			}
			if err := s.Add(ctx, tx, tc); err != nil {
				t.Fatal(err)
			}
		}
		run := func(name string, fn func(tx bun.Tx, s *store.Settler)) error {
			s := &store.Settler{}
			err := dialect.ApplyTx(ctx, db, func(ctx context.Context, tx bun.Tx) error {
				fn(tx, s)
				if err := s.Verify(ctx, tx, reg); err != nil {
					return err
				}
				return errors.New("roll back")
			})
			if err != nil && err.Error() == "roll back" {
				return nil
			}
			return err
		}
		if err := run("parent later", func(tx bun.Tx, s *store.Settler) {
			part(tx, s, todos, &testmodels.Todo{ID: 1, ListID: 1, Title: "a"})
			part(tx, s, lists, &testmodels.List{ID: 1, Name: "l"})
		}); err != nil {
			t.Fatalf("parent in a later part: %v", err)
		}
		if err := run("no parent", func(tx bun.Tx, s *store.Settler) {
			part(tx, s, lists, &testmodels.List{ID: 1, Name: "l"})
			part(tx, s, todos, &testmodels.Todo{ID: 1, ListID: 1, Title: "a"}, &testmodels.Todo{ID: 2, ListID: 9, Title: "b"})
		}); !errors.Is(err, dbsync.ErrForeignKey) {
			t.Fatalf("reference to a row no part writes: %v, want dbsync.ErrForeignKey", err)
		}
		err := run("parent deleted later", func(tx bun.Tx, s *store.Settler) {
			part(tx, s, lists, &testmodels.List{ID: 1, Name: "l"})
			part(tx, s, todos, &testmodels.Todo{ID: 1, ListID: 1, Title: "a"})
			part(tx, s, todos, &testmodels.Todo{ID: 2, ListID: 1, Title: "b"}) // list 1 found present
			if err := store.Delete(ctx, tx, lists, []string{"1"}); err != nil {
				t.Fatal(err)
			}
			tc := &store.Touched{}
			tc.Deleted(lists, "1")
			if err := s.Add(ctx, tx, tc); err != nil {
				t.Fatal(err)
			}
		})
		// PostgreSQL's ON DELETE CASCADE (never off) deletes the todos
		// with their list: nothing dangles there.
		if cascades := !dialect.ChecksReferencesLater(db); cascades && err != nil || !cascades && !errors.Is(err, dbsync.ErrForeignKey) {
			t.Fatalf("parent deleted by a later part: %v", err)
		}
	})
}
