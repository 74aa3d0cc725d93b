package client_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/server"
)

// Item is the tracked model of the example.
type Item struct {
	bun.BaseModel `bun:"table:items"`

	ID   uuid.UUID `bun:"id,pk,type:uuid"`
	Name string    `bun:"name,notnull"`
}

// openItems opens a SQLite file with the items table and tracks it.
func openItems(ctx context.Context, path string) (*bun.DB, *dbsync.Registry, error) {
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
	if err != nil {
		return nil, nil, err
	}
	db := bun.NewDB(sqldb, sqlitedialect.New())
	if _, err := db.NewCreateTable().Model((*Item)(nil)).IfNotExists().Exec(ctx); err != nil {
		return nil, nil, err
	}
	reg, err := dbsync.Track(db, (*Item)(nil))
	return db, reg, err
}

// ExampleSyncResult tells a Sync that moved something from one that found
// nothing to do, and prints what each did.
func ExampleSyncResult() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dbsync-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sdb, sreg, err := openItems(ctx, filepath.Join(dir, "server.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer sdb.Close()
	srv, err := server.New(ctx, sdb, sreg, &server.Config{AuthorizeRegister: server.OpenRegistration})
	if err != nil {
		log.Fatal(err)
	}
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, nil))
	hs := httptest.NewServer(r)
	defer hs.Close()

	db, reg, err := openItems(ctx, filepath.Join(dir, "node.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c, err := client.New(ctx, db, reg, &client.Config{URL: hs.URL + "/sync"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Register(ctx, nil); err != nil {
		log.Fatal(err)
	}

	sync := func() {
		res, err := c.Sync(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("changed=%v: %s\n", res.Changed(), res)
	}
	sync()
	if _, err := db.NewInsert().Model(&Item{ID: uuid.New(), Name: "milk"}).Exec(ctx); err != nil {
		log.Fatal(err)
	}
	sync()
	sync()
	v, err := c.Version(ctx)
	fmt.Println("version held:", v, err)
	// Output:
	// changed=false: nothing to push or pull; at version 0
	// changed=true: pushed 1 operation(s); at version 1
	// changed=false: nothing to push or pull; at version 1
	// version held: 1 <nil>
}
