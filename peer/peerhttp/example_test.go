package peerhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// Task is the model of the example: its UUID key lets every node create
// rows without asking the others.
type Task struct {
	bun.BaseModel `bun:"table:tasks"`

	ID    uuid.UUID `bun:"id,pk,type:uuid"`
	Title string    `bun:"title,notnull"`
}

// Example serves one node over HTTP (NewHandler, here on an httptest
// server; mount it on any router) and syncs another with it through a
// Peer, both ways, every request and answer signed with the mesh secret.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dbsync-peerhttp-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	newNode := func(name string) *peer.Node {
		// WAL, a busy timeout, foreign keys, immediate transactions.
		sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+filepath.Join(dir, name+".db")+
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
		if err != nil {
			panic(err)
		}
		db := bun.NewDB(sqldb, sqlitedialect.New())
		if _, err := db.NewCreateTable().Model((*Task)(nil)).Exec(ctx); err != nil {
			panic(err)
		}
		reg, err := dbsync.Track(db, (*Task)(nil))
		if err != nil {
			panic(err)
		}
		n, err := peer.New(ctx, db, reg, nil)
		if err != nil {
			panic(err)
		}
		return n
	}
	secret := []byte("the mesh secret, shared by every node")

	// The serving node.
	server := newNode("server")
	defer server.DB().Close()
	srv := httptest.NewServer(peerhttp.NewHandler(server, &peerhttp.Config{Secret: secret, SpoolDir: dir}))
	defer srv.Close()
	server.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "from the server"}).Exec(ctx)

	// The node that syncs with it.
	laptop := newNode("laptop")
	defer laptop.DB().Close()
	laptop.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "from the laptop"}).Exec(ctx)
	remote := &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: laptop, SpoolDir: dir}
	rep, err := laptop.Sync(ctx, remote)
	fmt.Println("laptop pulled", rep.Pulled, "pushed", rep.Pushed, err)

	var titles []string
	server.DB().NewSelect().Model((*Task)(nil)).Column("title").Order("title").Scan(ctx, &titles)
	fmt.Println("server:", titles)

	// Requests signed with another secret are refused.
	guess := &peerhttp.Peer{URL: srv.URL, Secret: []byte("a guess"), Self: laptop}
	_, err = laptop.Sync(ctx, guess)
	fmt.Println("wrong secret refused:", errors.Is(err, dbsync.ErrUnauthorized))
	// Output:
	// laptop pulled 1 pushed 1 <nil>
	// server: [from the laptop from the server]
	// wrong secret refused: true
}
