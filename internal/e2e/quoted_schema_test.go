package e2e_test

import (
	"context"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestQuotedSchemaName: a PostgreSQL server and a PostgreSQL node whose
// schemas only quoted identifiers spell ("Dbsync T …": capitals and a
// space) install, register, push, pull, repair and reset. dbsync read its
// catalog through current_schema()::regnamespace, which folds the name to
// lower case: every start failed with "schema … does not exist".
func TestQuotedSchemaName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewServerWith(t, dbtest.PostgresQuotedSchema(t), testmodels.CreateSchema, synctest.Models(), nil)
	a := synctest.NewClientWith(t, srv, "a", dbtest.PostgresQuotedSchema(t), testmodels.CreateSchema, synctest.Models(), nil)
	b := synctest.NewClient(t, srv, "b", nil)
	if _, err := a.DB.NewInsert().Model(&testmodels.List{Name: "home"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB.NewInsert().Model(&[]testmodels.Todo{{ListID: 1, Title: "milk"}, {ListID: 1, Title: "eggs"}}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	if _, err := b.DB.ExecContext(ctx, "UPDATE todos SET done = true WHERE title = 'milk'"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b)
	if _, err := a.DB.ExecContext(ctx, "DELETE FROM todos WHERE title = 'eggs'"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	mustSync(t, b)
	if _, err := a.Repair(ctx, &client.RepairOptions{Force: true}); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if _, err := a.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	ds := synctest.Dump(t, srv.DB, srv.Reg)
	for _, c := range []*synctest.Client{a, b} {
		if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), ds); d != "" {
			t.Fatalf("%s and the server differ:\n%s", c.Name, d)
		}
	}
	if n := len(ds["todos"]); n != 1 {
		t.Fatalf("server todos %v, want milk alone", ds["todos"])
	}
}
