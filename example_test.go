package dbsync_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
	"github.com/go-dbsync/dbsync/stream"
)

// Task is the tracked model of the examples.
type Task struct {
	bun.BaseModel `bun:"table:tasks"`

	ID    uuid.UUID `bun:"id,pk,type:uuid"`
	Title string    `bun:"title,notnull"`
	Done  bool      `bun:"done,notnull"`
}

// openSQLite opens a SQLite file the way dbsync wants it: WAL, a busy
// timeout, foreign keys, immediate transactions.
func openSQLite(path string) *bun.DB {
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
	if err != nil {
		panic(err)
	}
	return bun.NewDB(sqldb, sqlitedialect.New())
}

// Example is a complete round trip: a server on SQLite behind the chi
// handlers, two clients on their own SQLite files; one writes offline and
// syncs, the other syncs and sees the change.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dbsync-example-")
	defer os.RemoveAll(dir)

	// The server.
	sdb := openSQLite(filepath.Join(dir, "server.db"))
	defer sdb.Close()
	sdb.NewCreateTable().Model((*Task)(nil)).Exec(ctx)
	sreg, _ := dbsync.Track(sdb, (*Task)(nil))
	// Anyone may register here; a real server checks the caller's
	// credentials (server.RegisterInfo) in AuthorizeRegister.
	srv, _ := server.New(ctx, sdb, sreg, &server.Config{AuthorizeRegister: server.OpenRegistration})
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, nil))
	hs := httptest.NewServer(r)
	defer hs.Close()

	// Two clients.
	newClient := func(name string) (*bun.DB, *client.Client) {
		db := openSQLite(filepath.Join(dir, name+".db"))
		db.NewCreateTable().Model((*Task)(nil)).Exec(ctx)
		reg, _ := dbsync.Track(db, (*Task)(nil))
		c, err := client.New(ctx, db, reg, &client.Config{URL: hs.URL + "/sync"})
		if err != nil {
			panic(err)
		}
		if _, err := c.Register(ctx, nil); err != nil {
			panic(err)
		}
		return db, c
	}
	adb, alice := newClient("alice")
	defer adb.Close()
	bdb, bob := newClient("bob")
	defer bdb.Close()

	// Alice writes (any way she likes: here a model and raw SQL) and syncs.
	adb.NewInsert().Model(&Task{ID: uuid.New(), Title: "buy milk"}).Exec(ctx)
	adb.ExecContext(ctx, "UPDATE tasks SET done = true")
	pending, _ := alice.Pending(ctx)
	fmt.Println("alice has", len(pending), "pending operation")
	res, err := alice.Sync(ctx)
	fmt.Println("alice pushed:", len(res.Pushes), "push, version", res.VersionID, err)

	// Bob syncs and has the task.
	res, err = bob.Sync(ctx)
	fmt.Println("bob pulled:", len(res.Pulls), "pull, version", res.VersionID, err)
	var t Task
	bdb.NewSelect().Model(&t).Scan(ctx)
	fmt.Printf("bob sees %q done=%v\n", t.Title, t.Done)
	// Output:
	// alice has 1 pending operation
	// alice pushed: 1 push, version 1 <nil>
	// bob pulled: 1 pull, version 1 <nil>
	// bob sees "buy milk" done=true
}

// ExampleTrack shows what Track reads from a bun model.
func ExampleTrack() {
	db := openSQLite(filepath.Join(os.TempDir(), "dbsync-example-track.db"))
	defer db.Close()
	reg, err := dbsync.Track(db, (*Task)(nil))
	if err != nil {
		panic(err)
	}
	t := reg.Table("tasks")
	fmt.Println(t.Name, t.PK.Name, t.KeyKind == protocol.KeyUUID, len(t.Columns))
	// Output: tasks id true 3
}

// Example_policy resolves update/update conflicts on tasks field by field:
// a task done on either side stays done, the remote title wins.
func Example_policy() {
	policy := merge.PolicyFunc(func(c *merge.Conflict) merge.Decision {
		if c.Kind != merge.KindUpdateUpdate || c.LocalRow == nil || c.RemoteRow == nil {
			return merge.Default.Resolve(c)
		}
		row := protocol.Row{}
		for col, v := range c.RemoteRow {
			row[col] = v
		}
		if string(c.LocalRow["done"]) == "true" {
			row["done"] = json.RawMessage("true")
		}
		return merge.Decision{Resolution: merge.UseRow, Row: row}
	})
	d := policy.Resolve(&merge.Conflict{
		Kind:      merge.KindUpdateUpdate,
		Table:     "tasks",
		LocalRow:  protocol.Row{"id": json.RawMessage(`"x"`), "title": json.RawMessage(`"milk"`), "done": json.RawMessage("true")},
		RemoteRow: protocol.Row{"id": json.RawMessage(`"x"`), "title": json.RawMessage(`"oat milk"`), "done": json.RawMessage("false")},
	})
	fmt.Println(d.Resolution == merge.UseRow, string(d.Row["title"]), string(d.Row["done"]))
	// A client uses it for one table:
	_ = &client.Config{URL: "http://server/sync", Policies: map[string]merge.Policy{"tasks": policy}}
	// Output: true "oat milk" true
}

// Example_peerToPeer syncs two nodes without a server: last write wins.
func Example_peerToPeer() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dbsync-example-peer-")
	defer os.RemoveAll(dir)
	newNode := func(name string) (*bun.DB, *peer.Node) {
		db := openSQLite(filepath.Join(dir, name+".db"))
		db.NewCreateTable().Model((*Task)(nil)).Exec(ctx)
		reg, _ := dbsync.Track(db, (*Task)(nil))
		n, err := peer.New(ctx, db, reg, nil)
		if err != nil {
			panic(err)
		}
		return db, n
	}
	adb, a := newNode("a")
	defer adb.Close()
	bdb, b := newNode("b")
	defer bdb.Close()

	id := uuid.New()
	adb.NewInsert().Model(&Task{ID: id, Title: "draft"}).Exec(ctx)
	a.Sync(ctx, b.AsPeer())
	// Both edit the task; b edits last, so b's version wins everywhere.
	adb.ExecContext(ctx, "UPDATE tasks SET title = 'from a'")
	time.Sleep(5 * time.Millisecond) // clocks have millisecond resolution
	bdb.ExecContext(ctx, "UPDATE tasks SET title = 'from b'")
	rep, err := a.Sync(ctx, b.AsPeer())
	fmt.Println("pulled", rep.Pulled, "pushed", rep.Pushed, err)
	var ta, tb Task
	adb.NewSelect().Model(&ta).Scan(ctx)
	bdb.NewSelect().Model(&tb).Scan(ctx)
	fmt.Println(ta.Title, tb.Title)
	// Output:
	// pulled 1 pushed 0 <nil>
	// from b from b
}

// Example_stream syncs two nodes over an in-memory connection; a TCP or
// TLS connection works the same.
func Example_stream() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dbsync-example-stream-")
	defer os.RemoveAll(dir)
	newNode := func(name string) (*bun.DB, *peer.Node) {
		db := openSQLite(filepath.Join(dir, name+".db"))
		db.NewCreateTable().Model((*Task)(nil)).Exec(ctx)
		reg, _ := dbsync.Track(db, (*Task)(nil))
		n, _ := peer.New(ctx, db, reg, nil)
		return db, n
	}
	adb, a := newNode("a")
	defer adb.Close()
	bdb, b := newNode("b")
	defer bdb.Close()
	adb.NewInsert().Model(&Task{ID: uuid.New(), Title: "from a"}).Exec(ctx)
	bdb.NewInsert().Model(&Task{ID: uuid.New(), Title: "from b"}).Exec(ctx)

	secret := []byte("shared secret")
	c1, c2 := net.Pipe()
	go stream.Sync(ctx, c2, b, &stream.Config{Secret: secret})
	rep, err := stream.Sync(ctx, c1, a, &stream.Config{Secret: secret})
	fmt.Println("received", rep.Received, "sent", rep.Sent, err)
	var n int
	bdb.NewSelect().Model((*Task)(nil)).ColumnExpr("count(*)").Scan(ctx, &n)
	fmt.Println("b has", n, "tasks")
	// Output:
	// received 1 sent 1 <nil>
	// b has 2 tasks
}
