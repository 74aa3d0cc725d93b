package peer_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
)

// Task is the model of the example: its UUID key lets every node create
// rows without asking the others.
type Task struct {
	bun.BaseModel `bun:"table:tasks"`

	ID    uuid.UUID `bun:"id,pk,type:uuid"`
	Title string    `bun:"title,notnull"`
}

// Example makes two SQLite files peer nodes and syncs them in process
// (Node.AsPeer; peerhttp and stream carry the same exchange between
// processes): each writes while apart, and one Sync exchanges the writes
// both ways, deletes included.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dbsync-peer-example-")
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
		// The application's tables come first, then the node.
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
	a, b := newNode("a"), newNode("b")
	defer a.DB().Close()
	defer b.DB().Close()

	// Each node writes on its own, as the application does.
	a.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "buy milk"}).Exec(ctx)
	b.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "call Bob"}).Exec(ctx)
	rep, err := a.Sync(ctx, b.AsPeer())
	fmt.Println("a pulled", rep.Pulled, "pushed", rep.Pushed, err)

	// A delete travels as a tombstone.
	b.DB().NewDelete().Model((*Task)(nil)).Where("title = ?", "buy milk").Exec(ctx)
	rep, err = b.Sync(ctx, a.AsPeer())
	fmt.Println("b pulled", rep.Pulled, "pushed", rep.Pushed, err)

	for _, n := range []*peer.Node{a, b} {
		var titles []string
		n.DB().NewSelect().Model((*Task)(nil)).Column("title").Order("title").Scan(ctx, &titles)
		fmt.Println(titles)
	}
	da, _ := a.Digest(ctx)
	db, _ := b.Digest(ctx)
	fmt.Println("same digest:", da == db)
	// Output:
	// a pulled 1 pushed 1 <nil>
	// b pulled 0 pushed 1 <nil>
	// [call Bob]
	// [call Bob]
	// same digest: true
}
