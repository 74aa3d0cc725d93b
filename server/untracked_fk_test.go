package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// ufPet is tracked; its owner_id references uf_owners, a table dbsync does
// not track (an application that forgot to track the parent, or keeps it
// apart).
type ufPet struct {
	bun.BaseModel `bun:"table:uf_pets"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       int64  `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

func ufSchema(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS uf_owners (id BIGINT PRIMARY KEY)`,
		`CREATE TABLE IF NOT EXISTS uf_pets (id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_id BIGINT NOT NULL REFERENCES uf_owners (id), name TEXT NOT NULL)`,
	} {
		if db.Dialect().Name() == dialect.PG {
			q = strings.Replace(q, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", 1)
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestPushReferencingUntrackedTable: a push writing a row whose foreign key
// to an untracked table names a row the server lacks is refused
// (dbsync.ErrForeignKey, 409 foreign_key), nothing written, on SQLite as
// PostgreSQL's own check refuses it, whole or in chunks. A SQLite server
// applies pushes with foreign keys off and checked only references between
// tracked tables: it stored the row, referencing nothing, and nodes
// pulled it.
func TestPushReferencingUntrackedTable(t *testing.T) {
	t.Parallel()
	models := []any{(*ufPet)(nil)}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			name := kind + "/whole"
			if chunked {
				name = kind + "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := synctest.NewServerWith(t, dbtest.Open(t, kind), ufSchema, models, nil)
				cfg := &client.Config{}
				if chunked {
					cfg.PushChunkOperations = 1
				}
				a := synctest.NewClientWith(t, srv, "a", dbtest.SQLite(t), ufSchema, models, cfg)
				for _, db := range []bun.IDB{srv.DB, a.DB} {
					if _, err := db.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1)"); err != nil {
						t.Fatal(err)
					}
				}
				// The node has owner 2; the server does not.
				if _, err := a.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
					t.Fatal(err)
				}
				for _, p := range []*ufPet{{OwnerID: 1, Name: "rex"}, {OwnerID: 2, Name: "tom"}} {
					if _, err := a.DB.NewInsert().Model(p).Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
				_, err := a.Sync(ctx)
				if !errors.Is(err, dbsync.ErrForeignKey) || !errors.Is(err, dbsync.ErrPushRejected) {
					t.Fatalf("push of a pet whose owner the server lacks: %v, want ErrForeignKey and ErrPushRejected", err)
				}
				if kind == dbtest.KindSQLite && !strings.Contains(err.Error(), "uf_owners") {
					t.Fatalf("the refusal %q does not name uf_owners", err)
				}
				if n, err := srv.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 0 {
					t.Fatalf("the server holds %d pets (%v), want none", n, err)
				}
				// Once the server has the owner, the push goes through.
				if _, err := srv.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("sync once the owner exists: %v", err)
				}
				if n, err := srv.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 2 {
					t.Fatalf("the server holds %d pets (%v), want 2", n, err)
				}
			})
		}
	}
}

// TestPullReferencingUntrackedTable: a pull bringing a row whose foreign
// key to an untracked table names a row the node lacks is refused
// (dbsync.ErrForeignKey naming the table), nothing applied. A SQLite node
// applies pulls with foreign keys off and checked only references between
// tracked tables: it stored the row, referencing nothing (a repair or
// reset checks whole tables, and refused it).
func TestPullReferencingUntrackedTable(t *testing.T) {
	t.Parallel()
	models := []any{(*ufPet)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewServerWith(t, dbtest.Open(t, kind), ufSchema, models, nil)
			b := synctest.NewClientWith(t, srv, "b", dbtest.SQLite(t), ufSchema, models, nil)
			if _, err := srv.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1), (2)"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*ufPet{{OwnerID: 1, Name: "rex"}, {OwnerID: 2, Name: "tom"}} {
				if _, err := srv.DB.NewInsert().Model(p).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			_, err := b.Sync(ctx)
			if !errors.Is(err, dbsync.ErrForeignKey) || !strings.Contains(err.Error(), "uf_owners") {
				t.Fatalf("pull of a pet whose owner the node lacks: %v, want ErrForeignKey naming uf_owners", err)
			}
			if strings.Contains(err.Error(), "Repair") {
				t.Fatalf("the refusal %q points to Repair, which cannot bring rows of an untracked table", err)
			}
			if n, err := b.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 0 {
				t.Fatalf("the node holds %d pets (%v), want none", n, err)
			}
			// Once the node has the owner, the pull goes through.
			if _, err := b.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("sync once the owner exists: %v", err)
			}
			if n, err := b.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 2 {
				t.Fatalf("the node holds %d pets (%v), want 2", n, err)
			}
		})
	}
}
