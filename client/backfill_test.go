package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// A gained reference column's backfill restores (D2) only the rows that
// rows the node holds reference. When the node deleted both the child and
// its parent (neither pushed), the child's backfill row is skipped (the
// node does not hold it), so nothing on the node references the parent:
// its delete stays and reaches the server.
func TestBackfillKeepsDeleteOfParentOfDeletedChild(t *testing.T) {
	t.Parallel()
	type ownerT struct {
		bun.BaseModel `bun:"table:rowners"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	type itemV1 struct {
		bun.BaseModel `bun:"table:ritems"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	type itemV2 struct {
		bun.BaseModel `bun:"table:ritems"`

		ID      int64   `bun:"id,pk,autoincrement"`
		Name    string  `bun:"name,notnull"`
		OwnerID *int64  `bun:"owner_id"`
		Owner   *ownerT `bun:"rel:belongs-to,join:owner_id=id"`
	}
	v1 := []any{(*ownerT)(nil), (*itemV1)(nil)}
	v2 := []any{(*ownerT)(nil), (*itemV2)(nil)}
	create := synctest.CreateTables(v1...)
	migrate := func(ctx context.Context, db bun.IDB) error {
		_, err := db.ExecContext(ctx, "ALTER TABLE ritems ADD COLUMN owner_id BIGINT REFERENCES rowners (id)")
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, create, v1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, create, v1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, create, v1, nil)
			execSQL(t, dbA, "INSERT INTO rowners (name) VALUES ('ann'), ('bob')")
			execSQL(t, dbA, "INSERT INTO ritems (name) VALUES ('pen')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			for _, db := range []*bun.DB{serverDB, dbB} {
				if err := migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, v2, nil)
			newB := restart(t, srv2, dbB, 0, nil, v2...)
			syncOK(t, newB)
			execSQL(t, dbB, "UPDATE ritems SET owner_id = 2")
			syncOK(t, newB)

			// The old node deletes the item and its (now) owner, then
			// upgrades before it pushes.
			oldA := restart(t, srv2, dbA, 0, nil, v1...)
			syncOK(t, oldA)
			execSQL(t, dbA, "DELETE FROM ritems WHERE id = 1")
			execSQL(t, dbA, "DELETE FROM rowners WHERE id = 2")
			if err := migrate(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, v2...)
			res := syncOK(t, newA)
			if len(res.Pulls) > 0 && res.Pulls[0].Conflicts["reversed_dependency"] != 0 {
				t.Errorf("owner 2 was restored though no row the node holds references it: %+v", res.Pulls[0].Conflicts)
			}
			want := synctest.Dump(t, serverDB, srv2.Reg)
			if got := strings.Join(want["rowners"], " "); got != `{"id":1,"name":"ann"}` {
				t.Errorf("the node's delete of owner 2 was lost; server's owners: %s", got)
			}
			if got := strings.Join(want["ritems"], " "); got != `` {
				t.Errorf("server's items: %s", got)
			}
		})
	}
}

// A row a backfill restores (D2) meets the U rules: when the node gave
// the restored row's unique value to a row of its own (pending insert),
// the pull fails with *dbsync.UniqueConstraintError naming the node's row
// (U4), as a chunk's D2 restore does, not with the database's error.
func TestBackfillRestoreChecksUniques(t *testing.T) {
	t.Parallel()
	type ownerT struct {
		bun.BaseModel `bun:"table:uowners"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull,unique"`
	}
	type itemV1 struct {
		bun.BaseModel `bun:"table:uitems"`

		ID   int64  `bun:"id,pk,autoincrement"`
		Name string `bun:"name,notnull"`
	}
	type itemV2 struct {
		bun.BaseModel `bun:"table:uitems"`

		ID      int64   `bun:"id,pk,autoincrement"`
		Name    string  `bun:"name,notnull"`
		OwnerID *int64  `bun:"owner_id"`
		Owner   *ownerT `bun:"rel:belongs-to,join:owner_id=id"`
	}
	v1 := []any{(*ownerT)(nil), (*itemV1)(nil)}
	v2 := []any{(*ownerT)(nil), (*itemV2)(nil)}
	create := synctest.CreateTables(v1...)
	migrate := func(ctx context.Context, db bun.IDB) error {
		_, err := db.ExecContext(ctx, "ALTER TABLE uitems ADD COLUMN owner_id BIGINT REFERENCES uowners (id)")
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			serverDB := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, serverDB, create, v1, nil)
			dbA, dbB := dbtest.Open(t, kind), dbtest.Open(t, kind)
			a := synctest.NewClientWith(t, srv1, "a", dbA, create, v1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, create, v1, nil)
			execSQL(t, dbA, "INSERT INTO uowners (name) VALUES ('ann'), ('bob')")
			execSQL(t, dbA, "INSERT INTO uitems (name) VALUES ('pen')")
			syncOK(t, a.Client)
			syncOK(t, b.Client)

			for _, db := range []*bun.DB{serverDB, dbB} {
				if err := migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			srv2 := synctest.NewServerWith(t, serverDB, noSchema, v2, nil)
			newB := restart(t, srv2, dbB, 0, nil, v2...)
			syncOK(t, newB)
			execSQL(t, dbB, "UPDATE uitems SET owner_id = 2")
			syncOK(t, newB)

			// The old node deletes owner 2 and gives its name to a new
			// owner, then upgrades before it pushes.
			oldA := restart(t, srv2, dbA, 0, nil, v1...)
			syncOK(t, oldA)
			execSQL(t, dbA, "DELETE FROM uowners WHERE id = 2")
			execSQL(t, dbA, "INSERT INTO uowners (id, name) VALUES (3, 'bob')")
			if err := migrate(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := restart(t, srv2, dbA, 0, nil, v2...)
			_, err := newA.Sync(ctx)
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				t.Fatalf("want *dbsync.UniqueConstraintError naming uowners 3 (U4), got %T: %v", err, err)
			}
			if len(uc.Entries) != 1 || uc.Entries[0].Table != "uowners" || uc.Entries[0].PK != "3" {
				t.Errorf("entries: %+v", uc.Entries)
			}
		})
	}
}
