package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/server"
)

// Release 1: items with a title.
type h4Item1 struct {
	bun.BaseModel `bun:"table:h4_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
}

// Release 2: a nullable note, a defaulted priority, and tags.
type h4Item2 struct {
	bun.BaseModel `bun:"table:h4_items"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Title         string  `bun:"title,notnull"`
	Note          *string `bun:"note"`
	Prio          int64   `bun:"prio,notnull,default:0"`
}

type h4Tag struct {
	bun.BaseModel `bun:"table:h4_tags"`
	ID            int64    `bun:"id,pk,autoincrement"`
	ItemID        int64    `bun:"item_id,notnull"`
	Text          string   `bun:"text,notnull"`
	Item          *h4Item2 `bun:"rel:belongs-to,join:item_id=id,on_delete:CASCADE"`
}

var (
	h4V1 = []any{(*h4Item1)(nil)}
	h4V2 = []any{(*h4Item2)(nil), (*h4Tag)(nil)}
)

func h4Create(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*h4Item1)(nil)).IfNotExists().Exec(ctx)
	return err
}

func h4Migrate(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		"ALTER TABLE h4_items ADD COLUMN note TEXT",
		"ALTER TABLE h4_items ADD COLUMN prio BIGINT NOT NULL DEFAULT 0",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	_, err := db.NewCreateTable().Model((*h4Tag)(nil)).WithForeignKeys().Exec(ctx)
	return err
}

func h4Client(t *testing.T, url string, db *bun.DB, models ...any) *client.Client {
	t.Helper()
	return h4ClientWith(t, &client.Config{URL: url}, db, models...)
}

func h4ClientWith(t *testing.T, cfg *client.Config, db *bun.DB, models ...any) *client.Client {
	t.Helper()
	reg, err := dbsync.Track(db, models...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(context.Background(), db, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func h4ServerMigrate(t *testing.T, db *bun.DB, old []any, fn func(ctx context.Context, tx bun.Tx) error) {
	t.Helper()
	reg, err := dbsync.Track(db, old...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oplog.Migrate(context.Background(), db, reg, nil, fn); err != nil {
		t.Fatal(err)
	}
}

func h4Sync(t *testing.T, name string, c *client.Client) {
	t.Helper()
	if _, err := c.Sync(context.Background()); err != nil {
		t.Fatalf("%s sync: %v", name, err)
	}
}

func h4Row(t *testing.T, db bun.IDB, q string, dest ...any) {
	t.Helper()
	if err := db.NewRaw(q).Scan(context.Background(), dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// An old-release node pulls rows a new node gave the new columns and pushes
// its updates back; then goes offline past the horizon, the log is
// trimmed, and it comes back with a pending update; then upgrades with a
// pending update.
func TestOldNodeKeepsNewColumnsAcrossReset(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunk := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/chunk=%d", kind, chunk), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				cfg := &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
				sdb := dbtest.Open(t, kind)
				srv1 := synctest.NewServerWith(t, sdb, h4Create, h4V1, cfg)
				dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
				a := synctest.NewClientWith(t, srv1, "a", dbA, h4Create, h4V1, nil)
				b := synctest.NewClientWith(t, srv1, "b", dbB, h4Create, h4V1, nil)
				lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)

				// Release 2: server first.
				srv1.Srv.Close()
				h4ServerMigrate(t, sdb, h4V1, func(ctx context.Context, tx bun.Tx) error { return h4Migrate(ctx, tx) })
				srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, h4V2, cfg)
				if err := b.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return h4Migrate(ctx, tx) }); err != nil {
					t.Fatal(err)
				}
				newB := h4Client(t, srv2.URL, dbB, h4V2...)
				h4Sync(t, "b2", newB)
				lcExec(t, dbB, "UPDATE h4_items SET note = 'n1', prio = 5 WHERE id = 1", "INSERT INTO h4_tags (id, item_id, text) VALUES (1, 1, 'tag')")
				h4Sync(t, "b2", newB)

				oldA := h4ClientWith(t, &client.Config{URL: srv2.URL, PushChunkOperations: chunk}, dbA, h4V1...)
				h4Sync(t, "a1", oldA)
				lcExec(t, dbA, "UPDATE h4_items SET title = 'one-a' WHERE id = 1", "INSERT INTO h4_items (title) VALUES ('three')")
				h4Sync(t, "a1", oldA)
				var note string
				var prio int64
				h4Row(t, sdb, "SELECT note, prio FROM h4_items WHERE id = 1", &note, &prio)
				if note != "n1" || prio != 5 {
					t.Fatalf("server item 1 after old update: note %q prio %d", note, prio)
				}

				// A offline past the horizon with a pending update.
				lcExec(t, dbA, "UPDATE h4_items SET title = 'one-aa' WHERE id = 1", "UPDATE h4_items SET title = 'two-aa' WHERE id = 2")
				lcExec(t, dbB, "UPDATE h4_items SET note = 'n2' WHERE id = 1", "UPDATE h4_items SET note = 'm2', prio = 7 WHERE id = 2")
				h4Sync(t, "b2", newB)
				clk.Advance(25 * time.Hour)
				lcExec(t, dbB, "UPDATE h4_items SET prio = 6 WHERE id = 1")
				h4Sync(t, "b2", newB)
				h4Sync(t, "b2", newB)
				tr, err := srv2.Srv.Trim(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("trim %+v", tr)
				if _, err := oldA.Pull(ctx); !errors.Is(err, dbsync.ErrResetRequired) {
					t.Fatalf("old A pull: %v, want reset_required", err)
				}
				h4Sync(t, "a1", oldA)
				var title string
				h4Row(t, sdb, "SELECT title, note, prio FROM h4_items WHERE id = 1", &title, &note, &prio)
				if title != "one-aa" || note != "n2" || prio != 6 {
					t.Fatalf("server item 1 after old reset: %q %q %d", title, note, prio)
				}
				h4Row(t, sdb, "SELECT title, note, prio FROM h4_items WHERE id = 2", &title, &note, &prio)
				if title != "two-aa" || note != "m2" || prio != 7 {
					t.Fatalf("server item 2 after old reset: %q %q %d", title, note, prio)
				}

				// A upgrades with a pending update.
				lcExec(t, dbA, "UPDATE h4_items SET title = 'one-up' WHERE id = 1")
				if err := oldA.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return h4Migrate(ctx, tx) }); err != nil {
					t.Fatal(err)
				}
				newA := h4ClientWith(t, &client.Config{URL: srv2.URL, PushChunkOperations: chunk}, dbA, h4V2...)
				h4Sync(t, "a2", newA)
				h4Sync(t, "b2", newB)
				h4Row(t, sdb, "SELECT title, note, prio FROM h4_items WHERE id = 1", &title, &note, &prio)
				if title != "one-up" || note != "n2" || prio != 6 {
					t.Fatalf("server item 1 after A's upgrade: %q %q %d", title, note, prio)
				}
				want := synctest.Dump(t, sdb, srv2.Reg)
				for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
					if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
						t.Errorf("%s differs:\n%s", name, d)
					}
				}
			})
		}
	}
}
