package e2e_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

type h2Owner struct {
	bun.BaseModel `bun:"table:h2u_owners"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type h2Project struct {
	bun.BaseModel `bun:"table:h2u_projects"`
	ID            int64    `bun:"id,pk,autoincrement"`
	OwnerID       int64    `bun:"owner_id,notnull"`
	Name          string   `bun:"name,notnull"`
	Owner         *h2Owner `bun:"rel:belongs-to,join:owner_id=id,on_delete:CASCADE"`
}

type h2Label struct {
	bun.BaseModel `bun:"table:h2u_labels"`
	ID            int64      `bun:"id,pk,autoincrement"`
	ProjectID     int64      `bun:"project_id,notnull"`
	Text          string     `bun:"text,notnull"`
	Project       *h2Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

var (
	h2V1 = []any{(*h2Owner)(nil), (*h2Project)(nil)}
	h2V2 = []any{(*h2Owner)(nil), (*h2Project)(nil), (*h2Label)(nil)}
)

func h2CreateV1(ctx context.Context, db bun.IDB) error {
	for _, m := range h2V1 {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func h2MigrateV2(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*h2Label)(nil)).IfNotExists().WithForeignKeys().Exec(ctx)
	return err
}

func h2Restart(t *testing.T, srv *synctest.Server, db *bun.DB, models ...any) *client.Client {
	t.Helper()
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(context.Background(), db, reg, &client.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup: server and b on release 2, b labels project 2 (owner 1); a still on
// release 1.
func h2Upgrade(t *testing.T, kind string) (ctx context.Context, srv2 *synctest.Server, dbA, dbB *bun.DB, oldA, newB *client.Client) {
	ctx = context.Background()
	serverDB := dbtest.Open(t, kind)
	srv1 := synctest.NewServerWith(t, serverDB, h2CreateV1, h2V1, nil)
	dbA, dbB = dbtest.Open(t, kind), dbtest.Open(t, kind)
	a := synctest.NewClientWith(t, srv1, "a", dbA, h2CreateV1, h2V1, nil)
	b := synctest.NewClientWith(t, srv1, "b", dbB, h2CreateV1, h2V1, nil)
	lcExec(t, dbA, "INSERT INTO h2u_owners (id, name) VALUES (1, 'o1'), (2, 'o2')",
		"INSERT INTO h2u_projects (id, owner_id, name) VALUES (1, 2, 'p1'), (2, 1, 'p2')")
	for _, c := range []*client.Client{a.Client, b.Client} {
		if _, err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, db := range []*bun.DB{serverDB, dbB} {
		if err := h2MigrateV2(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	srv2 = synctest.NewServerWith(t, serverDB, func(context.Context, bun.IDB) error { return nil }, h2V2, nil)
	newB = h2Restart(t, srv2, dbB, h2V2...)
	if _, err := newB.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	lcExec(t, dbB, "INSERT INTO h2u_labels (id, project_id, text) VALUES (1, 2, 'l')")
	if _, err := newB.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	oldA = h2Restart(t, srv2, dbA, h2V1...)
	if _, err := oldA.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return
}

// The old node deletes owner 1 (cascade: project 2, which b's label
// references), then upgrades before it syncs: the backfill's label
// restores project 2 (D2), which references owner 1, deleted too.
func TestBackfillD2Chain(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx, srv2, dbA, _, _, newB := h2Upgrade(t, kind)
			lcExec(t, dbA, "DELETE FROM h2u_owners WHERE id = 1")
			if err := h2MigrateV2(ctx, dbA); err != nil {
				t.Fatal(err)
			}
			newA := h2Restart(t, srv2, dbA, h2V2...)
			for i := range 2 {
				if _, err := newA.Sync(ctx); err != nil {
					t.Fatalf("a's sync %d: %v", i, err)
				}
			}
			if _, err := newB.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			want := synctest.Dump(t, srv2.DB, srv2.Reg)
			for name, db := range map[string]*bun.DB{"a": dbA} {
				if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
					t.Errorf("%s differs:\n%s", name, d)
				}
			}
		})
	}
}

// The old node deletes project 2, which b's label references (a table it
// does not know, E1), and syncs before upgrading: the refusal is a
// ScopeError naming project 2 (before, a push_rejected at every sync,
// blocking the node's other changes until it upgraded); giving the delete
// up brings the project back, and the rename goes through.
func TestOldNodeDeletesReferencedRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx, srv2, dbA, _, oldA, _ := h2Upgrade(t, kind)
			lcExec(t, dbA, "DELETE FROM h2u_projects WHERE id = 2", "UPDATE h2u_projects SET name = 'p1-a' WHERE id = 1")
			giveUp(t, oldA, protocol.ScopeEntry{Table: "h2u_projects", PK: "2"})
			if got := keys(t, dbA, "h2u_projects"); len(got) != 2 {
				t.Fatalf("a's projects: %v, want 1 and 2", got)
			}
			var name string
			if err := srv2.DB.NewRaw("SELECT name FROM h2u_projects WHERE id = 1").Scan(ctx, &name); err != nil || name != "p1-a" {
				t.Fatalf("server's project 1: %q, %v", name, err)
			}
		})
	}
}
