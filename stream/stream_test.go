package stream_test

import (
	"context"
	"net"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

func node(t *testing.T, kind string) *peer.Node {
	t.Helper()
	ctx := context.Background()
	db := dbtest.Open(t, kind)
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

func TestPipeSmoke(t *testing.T) {
	ctx := context.Background()
	a, b := node(t, dbtest.KindSQLite), node(t, dbtest.KindPostgres)
	for i := range 3000 {
		if _, err := a.DB().NewInsert().Model(&testmodels.Note{ID: uuid.New(), Body: "a"}).Exec(ctx); err != nil {
			t.Fatal(err, i)
		}
	}
	if _, err := b.DB().NewInsert().Model(&testmodels.List{Name: "from b"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	cfg := &stream.Config{Secret: []byte("s3cret")}
	done := make(chan error, 1)
	go func() {
		_, err := stream.Sync(ctx, c2, b, cfg)
		done <- err
	}()
	rep, err := stream.Sync(ctx, c1, a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	da, _ := a.Digest(ctx)
	db, _ := b.Digest(ctx)
	if da != db {
		t.Fatal("digests differ")
	}
}
