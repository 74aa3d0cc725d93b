package peer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

func newNode(t *testing.T, db *bun.DB) *peer.Node {
	t.Helper()
	ctx := context.Background()
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	n, err := peer.New(ctx, db, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSmoke(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			a := newNode(t, dbtest.SQLite(t))
			b := newNode(t, dbtest.Open(t, kind))
			if _, err := a.DB().NewInsert().Model(&testmodels.List{Name: "home"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			note := &testmodels.Note{ID: uuid.New(), Body: "hello", Created: time.Now().UTC().Truncate(time.Microsecond)}
			if _, err := a.DB().NewInsert().Model(note).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB().NewInsert().Model(&testmodels.List{Name: "work"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := a.Sync(ctx, b.AsPeer())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("report %+v", rep)
			da, _ := a.Digest(ctx)
			db, _ := b.Digest(ctx)
			if da != db {
				t.Fatalf("digests differ")
			}
			// update on b, delete on a
			if _, err := b.DB().ExecContext(ctx, "UPDATE notes SET body = 'changed'"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.DB().ExecContext(ctx, "DELETE FROM lists WHERE name = 'work'"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
				t.Fatal(err)
			}
			da, _ = a.Digest(ctx)
			db, _ = b.Digest(ctx)
			if da != db {
				t.Fatalf("digests differ after second sync")
			}
			var names []string
			b.DB().NewSelect().Model((*testmodels.List)(nil)).Column("name").Scan(ctx, &names)
			var body string
			a.DB().NewSelect().Model((*testmodels.Note)(nil)).Column("body").Scan(ctx, &body)
			t.Logf("b lists %v, a note body %q", names, body)
			if len(names) != 1 || names[0] != "home" || body != "changed" {
				t.Fatal("wrong state")
			}
		})
	}
}
