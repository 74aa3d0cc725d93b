package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/peer"
)

// genWith models a table with a generated column, the column included.
type genWith struct {
	bun.BaseModel `bun:"table:gens"`
	ID            string `bun:"id,pk"`
	A             int64  `bun:"a,notnull"`
	Twice         int64  `bun:"twice"`
}

// genScan models it with the generated column read, never written.
type genScan struct {
	bun.BaseModel `bun:"table:gens"`
	ID            string `bun:"id,pk"`
	A             int64  `bun:"a,notnull"`
	Twice         int64  `bun:"twice,scanonly"`
}

// genMore models it with a column the table lacks.
type genMore struct {
	bun.BaseModel `bun:"table:gens"`
	ID            string  `bun:"id,pk"`
	A             int64   `bun:"a,notnull"`
	Note          *string `bun:"note"`
}

func createGens(ctx context.Context, db bun.IDB) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE gens (id TEXT PRIMARY KEY, a BIGINT NOT NULL, twice BIGINT GENERATED ALWAYS AS (a * 2) STORED)")
	return err
}

// TestModelColumnsChecked: a model holding a generated column, or a
// column its table lacks, is refused when a sync mode installs it
// (oplog.Install as client.New and server.New run it, peer.New), naming
// the column, and the application's writes to the table go on working.
// Before, a generated column installed, and every write of a received
// row failed (every pull of a client, every apply of a peer: the node
// wedged); and peer.New installed capture triggers reading a missing
// column, which failed every insert and update of the application. The
// generated column tagged scanonly syncs, each node computing its own.
func TestModelColumnsChecked(t *testing.T) {
	t.Parallel()
	installs := []struct {
		name    string
		install func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error
	}{
		{"client", func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error {
			_, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: true})
			return err
		}},
		{"server", func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error {
			_, err := oplog.Install(ctx, db, reg, nil)
			return err
		}},
		{"peer", func(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error {
			_, err := peer.New(ctx, db, reg, nil)
			return err
		}},
	}
	models := []struct {
		name  string
		model any
		is    error  // the error wanted, nil: installs
		names string // what the error names
	}{
		{"generated", (*genWith)(nil), dbsync.ErrInvalidModel, "gens.twice"},
		{"missing", (*genMore)(nil), oplog.ErrColumnMissing, "gens.note"},
		{"scanonly", (*genScan)(nil), nil, ""},
	}
	for _, kind := range dbtest.Kinds {
		for _, in := range installs {
			for _, m := range models {
				t.Run(kind+"/"+in.name+"/"+m.name, func(t *testing.T) {
					t.Parallel()
					ctx := t.Context()
					db := dbtest.Open(t, kind)
					if err := createGens(ctx, db); err != nil {
						t.Fatal(err)
					}
					reg, err := dbsync.Track(db, m.model)
					if err != nil {
						t.Fatal(err)
					}
					err = in.install(ctx, db, reg)
					switch {
					case m.is == nil && err != nil:
						t.Fatalf("install: %v", err)
					case m.is != nil && (!errors.Is(err, m.is) || !strings.Contains(err.Error(), m.names)):
						t.Fatalf("install: %v, want %v naming %s", err, m.is, m.names)
					case m.is != nil && in.name == "peer" && !errors.Is(err, dbsync.ErrInvalidModel):
						t.Fatalf("peer.New: %v, want dbsync.ErrInvalidModel too", err)
					}
					for _, q := range []string{"INSERT INTO gens (id, a) VALUES ('g1', 2)", "UPDATE gens SET a = 3", "DELETE FROM gens"} {
						if _, err := db.ExecContext(ctx, q); err != nil {
							t.Fatalf("%s after the install: %v", q, err)
						}
					}
				})
			}
		}
	}
}

// TestGeneratedColumnSyncs: with the generated column tagged scanonly,
// rows sync between peers and every node computes the column itself.
func TestGeneratedColumnSyncs(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var nodes [2]*peer.Node
			for i := range nodes {
				db := dbtest.Open(t, kind)
				if err := createGens(ctx, db); err != nil {
					t.Fatal(err)
				}
				nodes[i] = synctest.NewNodeWith(t, db, []any{(*genScan)(nil)}, nil)
			}
			a, b := nodes[0], nodes[1]
			if _, err := a.DB().NewInsert().Model(&genScan{ID: "g1", A: 21}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
				t.Fatal(err)
			}
			var got genScan
			if err := b.DB().NewSelect().Model(&got).Column("id", "a", "twice").Where("id = 'g1'").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if got.A != 21 || got.Twice != 42 {
				t.Fatalf("b's row: a %d, twice %d; want 21 and 42", got.A, got.Twice)
			}
		})
	}
}
