// Command shared runs the multi-user to-do example in one process: a sync
// server with scopes (partial sync) on an embedded SQLite database, behind
// real HTTP on a loopback port, and three devices of two users: Alice's
// phone and laptop, Bob's phone, each on its own SQLite file. Alice shares
// a list with Bob and later unshares it; Bob's phone receives the shared
// list, never Alice's private one, and loses the shared one when it is
// unshared. A write outside Bob's scope is refused.
//
//	go run ./examples/shared
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/server"
)

// List belongs to its owner; members see it too.
type List struct {
	bun.BaseModel `bun:"table:lists"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	OwnerID string    `bun:"owner_id,notnull"`
	Name    string    `bun:"name,notnull"`
}

// Member shares a list with a user.
type Member struct {
	bun.BaseModel `bun:"table:members"`

	ID     uuid.UUID `bun:"id,pk,type:uuid"`
	ListID uuid.UUID `bun:"list_id,notnull,type:uuid"`
	UserID string    `bun:"user_id,notnull"`
	List   *List     `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// Todo is an item of a list.
type Todo struct {
	bun.BaseModel `bun:"table:todos"`

	ID     uuid.UUID `bun:"id,pk,type:uuid"`
	ListID uuid.UUID `bun:"list_id,notnull,type:uuid"`
	Title  string    `bun:"title,notnull"`
	List   *List     `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

func models() []any { return []any{(*List)(nil), (*Member)(nil), (*Todo)(nil)} }

// scopes: a list is its owner's and its members'; memberships and items
// follow their list.
func scopes() server.Scopes {
	return server.Scopes{
		"lists":   server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("members", "list_id", "user_id")),
		"members": server.ThroughParent("list_id"),
		"todos":   server.ThroughParent("list_id"),
	}
}

// tokens stand for the application's login: a token names its user.
var tokens = map[string]string{"Bearer alice-token": "alice", "Bearer bob-token": "bob"}

func authorize(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
	user, ok := tokens[info.Credentials]
	if !ok {
		return nil, errors.New("unknown token")
	}
	return &server.Registration{UserID: &user}, nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "shared:", err)
		os.Exit(1)
	}
}

// device is one client node.
type device struct {
	name string
	db   *bun.DB
	*client.Client
}

func open(ctx context.Context, path string) (*bun.DB, *dbsync.Registry, error) {
	db, err := todoapp.Open(path)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range models() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	reg, err := dbsync.Track(db, models()...)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, reg, nil
}

func run(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "dbsync-shared-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	sdb, sreg, err := open(ctx, filepath.Join(dir, "server.db"))
	if err != nil {
		return err
	}
	defer sdb.Close()
	srv, err := server.New(ctx, sdb, sreg, &server.Config{AuthorizeRegister: authorize, Scopes: scopes()})
	if err != nil {
		return err
	}
	url, stop, err := todoapp.Serve(srv)
	if err != nil {
		return err
	}
	defer stop()

	newDevice := func(user, name string) (*device, error) {
		db, reg, err := open(ctx, filepath.Join(dir, name+".db"))
		if err != nil {
			return nil, err
		}
		c, err := client.New(ctx, db, reg, &client.Config{URL: url})
		if err != nil {
			db.Close()
			return nil, err
		}
		if _, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: "Bearer " + user + "-token"}); err != nil {
			db.Close()
			return nil, err
		}
		return &device{name: name, db: db, Client: c}, nil
	}
	var devices []*device
	for _, d := range []struct{ user, name string }{{"alice", "alice-phone"}, {"alice", "alice-laptop"}, {"bob", "bob-phone"}} {
		dev, err := newDevice(d.user, d.name)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		defer dev.db.Close()
		devices = append(devices, dev)
	}
	alicePhone, aliceLaptop, bob := devices[0], devices[1], devices[2]
	say("alice (phone, laptop) and bob (phone) registered")

	sync := func(d *device) error {
		if _, err := d.Sync(ctx); err != nil {
			return fmt.Errorf("%s sync: %w", d.name, err)
		}
		return nil
	}
	show := func(d *device) error {
		lists, err := holds(ctx, d.db)
		if err != nil {
			return err
		}
		say("%s holds: %s", d.name, lists)
		if strings.Contains(lists, "Diary") && d == bob {
			return errors.New("bob's phone received alice's private list")
		}
		return nil
	}

	groceries, diary := uuid.New(), uuid.New()
	if _, err := alicePhone.db.NewInsert().Model(&[]List{{ID: groceries, OwnerID: "alice", Name: "Groceries"}, {ID: diary, OwnerID: "alice", Name: "Diary"}}).Exec(ctx); err != nil {
		return err
	}
	if _, err := alicePhone.db.NewInsert().Model(&[]Todo{{ID: uuid.New(), ListID: groceries, Title: "milk"}, {ID: uuid.New(), ListID: diary, Title: "secret"}}).Exec(ctx); err != nil {
		return err
	}
	for _, d := range devices {
		if err := sync(d); err != nil {
			return err
		}
	}
	say("alice's phone created Groceries and a private Diary; every device synced")
	for _, d := range devices {
		if err := show(d); err != nil {
			return err
		}
	}

	if _, err := alicePhone.db.NewInsert().Model(&Member{ID: uuid.New(), ListID: groceries, UserID: "bob"}).Exec(ctx); err != nil {
		return err
	}
	if err := sync(alicePhone); err != nil {
		return err
	}
	if err := sync(bob); err != nil {
		return err
	}
	say("alice shared Groceries with bob")
	if err := show(bob); err != nil {
		return err
	}
	if _, err := bob.db.NewInsert().Model(&Todo{ID: uuid.New(), ListID: groceries, Title: "bread"}).Exec(ctx); err != nil {
		return err
	}
	if err := sync(bob); err != nil {
		return err
	}
	if err := sync(aliceLaptop); err != nil {
		return err
	}
	say("bob added bread to Groceries")
	if err := show(aliceLaptop); err != nil {
		return err
	}

	// Bob tries to take the list over: the server refuses (403).
	if _, err := bob.db.NewUpdate().Model((*List)(nil)).Set("owner_id = ?", "bob").Where("id = ?", groceries).Exec(ctx); err != nil {
		return err
	}
	_, err = bob.Sync(ctx)
	var se *dbsync.ScopeError
	if !errors.As(err, &se) {
		return fmt.Errorf("bob took the list over: %v", err)
	}
	say("bob tried to make Groceries his: refused (%d row out of his scope)", len(se.Entries))
	if _, err := bob.db.NewUpdate().Model((*List)(nil)).Set("owner_id = ?", "alice").Where("id = ?", groceries).Exec(ctx); err != nil {
		return err
	}
	if err := bob.DiscardPending(ctx, se.Entries); err != nil {
		return err
	}

	if _, err := alicePhone.db.NewDelete().Model((*Member)(nil)).Where("list_id = ? AND user_id = ?", groceries, "bob").Exec(ctx); err != nil {
		return err
	}
	for _, d := range devices {
		if err := sync(d); err != nil {
			return err
		}
	}
	say("alice unshared Groceries; every device synced")
	for _, d := range devices {
		if err := show(d); err != nil {
			return err
		}
	}
	return nil
}

// holds describes a device's lists and their items, e.g.
// "Diary [secret]; Groceries [bread milk]".
func holds(ctx context.Context, db *bun.DB) (string, error) {
	var lists []List
	if err := db.NewSelect().Model(&lists).Order("name").Scan(ctx); err != nil {
		return "", err
	}
	if len(lists) == 0 {
		return "nothing", nil
	}
	var parts []string
	for _, l := range lists {
		var titles []string
		if err := db.NewSelect().Model((*Todo)(nil)).Column("title").Where("list_id = ?", l.ID).Order("title").Scan(ctx, &titles); err != nil {
			return "", err
		}
		parts = append(parts, l.Name+" ["+strings.Join(titles, " ")+"]")
	}
	return strings.Join(parts, "; "), nil
}
