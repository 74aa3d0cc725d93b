package dbsync_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/server"
)

type immParent struct {
	bun.BaseModel `bun:"table:imm_parents"`
	ID            int64 `bun:"id,pk,autoincrement"`
}

// immChild references imm_parents and has a unique index only the
// database catalog declares.
type immChild struct {
	bun.BaseModel `bun:"table:imm_children"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ParentID      int64  `bun:"parent_id"`
	Code          string `bun:"code"`
}

// TestRegistryUnchangedByInstall: a registry is immutable once tracked.
// oplog.Install, client.New, server.New and peer.New complete a copy with
// the catalog's constraints; the caller's registry stays as Track made it.
func TestRegistryUnchangedByInstall(t *testing.T) {
	t.Parallel()
	installs := map[string]func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) (*dbsync.Registry, error){
		"oplog.Install": func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) (*dbsync.Registry, error) {
			return oplog.Install(ctx, db, reg, nil)
		},
		"client.New": func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) (*dbsync.Registry, error) {
			c, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync"})
			if err != nil {
				return nil, err
			}
			return c.Registry(), nil
		},
		"server.New": func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) (*dbsync.Registry, error) {
			s, err := server.New(ctx, db, reg, &server.Config{AuthorizeRegister: server.OpenRegistration})
			if err != nil {
				return nil, err
			}
			return s.Registry(), nil
		},
		"peer.New": func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) (*dbsync.Registry, error) {
			n, err := peer.New(ctx, db, reg, nil)
			if err != nil {
				return nil, err
			}
			return n.Registry(), nil
		},
	}
	for name, install := range installs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbtest.Each(t, func(t *testing.T, db *bun.DB) {
				t.Parallel()
				ctx := t.Context()
				auto := "INTEGER PRIMARY KEY AUTOINCREMENT"
				if dialect.MustOf(db) == dialect.Postgres {
					auto = "BIGSERIAL PRIMARY KEY"
				}
				for _, q := range []string{
					"CREATE TABLE imm_parents (id " + auto + ")",
					"CREATE TABLE imm_children (id " + auto + ", parent_id BIGINT REFERENCES imm_parents (id), code TEXT)",
					"CREATE UNIQUE INDEX imm_children_code ON imm_children (code)",
				} {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				reg, err := dbsync.Track(db, (*immChild)(nil), (*immParent)(nil))
				if err != nil {
					t.Fatal(err)
				}
				fingerprint := reg.Fingerprint()
				got, err := install(ctx, db, reg)
				if err != nil {
					t.Fatal(err)
				}
				child := reg.Table("imm_children")
				if len(child.ForeignKeys) != 0 || len(child.Uniques) != 0 {
					t.Errorf("caller's registry changed: foreign keys %v, uniques %v", child.ForeignKeys, child.Uniques)
				}
				if reg.Tables()[0].Name != "imm_children" || reg.Fingerprint() != fingerprint {
					t.Errorf("caller's registry reordered: %v", reg.Tables())
				}
				if got == reg {
					t.Fatal("the completed registry is the caller's")
				}
				if len(got.Table("imm_children").ForeignKeys) != 1 || got.Tables()[0].Name != "imm_parents" {
					t.Errorf("completed registry: foreign keys %v, order %v", got.Table("imm_children").ForeignKeys, got.Tables())
				}
				if name != "peer.New" && len(got.Table("imm_children").Uniques) != 1 {
					t.Errorf("completed registry: uniques %v", got.Table("imm_children").Uniques)
				}
			})
		})
	}
}
