package stream_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// Task is the model of the example: its UUID key lets every node create
// rows without asking the others.
type Task struct {
	bun.BaseModel `bun:"table:tasks"`

	ID    uuid.UUID `bun:"id,pk,type:uuid"`
	Title string    `bun:"title,notnull"`
}

// Example serves one node on a loopback TCP listener (Serve; Listen
// makes the listener, TLS with a tls.Config) and syncs another with it
// (Sync on a dialed connection), both ways, then stops serving by ending
// Serve's context.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dbsync-stream-example-")
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
	config := &stream.Config{Secret: []byte("shared by both ends"), SpoolDir: dir}

	// One end serves until its context ends.
	hub := newNode("hub")
	defer hub.DB().Close()
	hub.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "from the hub"}).Exec(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- stream.Serve(serveCtx, ln, hub, config) }()

	// The other dials and runs one session, which closes the connection.
	device := newNode("device")
	defer device.DB().Close()
	device.DB().NewInsert().Model(&Task{ID: uuid.New(), Title: "from the device"}).Exec(ctx)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	rep, err := stream.Sync(ctx, conn, device, config)
	fmt.Println("device received", rep.Received, "sent", rep.Sent, err)

	stop()
	fmt.Println("Serve returned:", <-served)

	var titles []string
	hub.DB().NewSelect().Model((*Task)(nil)).Column("title").Order("title").Scan(ctx, &titles)
	fmt.Println("hub:", titles)
	// Output:
	// device received 1 sent 1 <nil>
	// Serve returned: <nil>
	// hub: [from the device from the hub]
}
