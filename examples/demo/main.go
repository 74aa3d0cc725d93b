// Command demo runs the to-do example end to end in one process, with
// nothing but Go installed: a sync server on an embedded SQLite database,
// behind real HTTP on a loopback port, and two client nodes, Alice and Bob,
// each on its own SQLite file. They share a list, go offline, make
// conflicting edits, sync, and the demo prints the state every database
// converged to.
//
//	go run ./examples/demo
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/server"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// node is one client of the demo.
type node struct {
	name string
	db   *bun.DB
	*client.Client
}

func run(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "dbsync-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	// The server: SQLite, handlers mounted under /sync on a loopback port.
	sdb, err := todoapp.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		return err
	}
	defer sdb.Close()
	sreg, err := todoapp.Setup(ctx, sdb)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	// Anyone may register: a demo on a loopback port. A real server checks
	// the caller's credentials (see examples/todo-server).
	srv, err := server.New(ctx, sdb, sreg, &server.Config{Logger: quiet, AuthorizeRegister: server.OpenRegistration})
	if err != nil {
		return err
	}
	url, stop, err := todoapp.Serve(srv)
	if err != nil {
		return err
	}
	defer stop()
	say("server listening on %s (SQLite %s)", url, filepath.Join(dir, "server.db"))

	newNode := func(name string) (*node, error) {
		db, err := todoapp.Open(filepath.Join(dir, name+".db"))
		if err != nil {
			return nil, err
		}
		reg, err := todoapp.Setup(ctx, db)
		if err != nil {
			return nil, err
		}
		c, err := client.New(ctx, db, reg, &client.Config{URL: url, Logger: quiet})
		if err != nil {
			return nil, err
		}
		if _, err := c.Register(ctx, nil); err != nil {
			return nil, err
		}
		return &node{name: name, db: db, Client: c}, nil
	}
	alice, err := newNode("alice")
	if err != nil {
		return err
	}
	defer alice.db.Close()
	bob, err := newNode("bob")
	if err != nil {
		return err
	}
	defer bob.db.Close()
	say("alice and bob registered")

	sync := func(n *node) error {
		res, err := n.Sync(ctx)
		if err != nil {
			return fmt.Errorf("%s: sync: %w", n.name, err)
		}
		say("%s synced: %s", n.name, res)
		return nil
	}

	// 1. Alice creates a shared list; both sync.
	say("\n1. alice creates the Groceries list with milk, eggs and bread")
	groceries := &todoapp.List{ID: uuid.New(), Name: "Groceries"}
	if _, err := alice.db.NewInsert().Model(groceries).Exec(ctx); err != nil {
		return err
	}
	for _, title := range []string{"milk", "eggs", "bread"} {
		if err := addTodo(ctx, alice.db, groceries.ID, title); err != nil {
			return err
		}
	}
	if err := sync(alice); err != nil {
		return err
	}
	if err := sync(bob); err != nil {
		return err
	}

	// 2. Both go offline and edit the same items.
	say("\n2. offline, both edit:")
	say("   alice: ticks milk, renames eggs to \"6 eggs\", deletes bread, adds butter")
	if err := exec(ctx, alice.db,
		"UPDATE todos SET done = TRUE WHERE title = 'milk'",
		"UPDATE todos SET title = '6 eggs' WHERE title = 'eggs'",
		"DELETE FROM todos WHERE title = 'bread'"); err != nil {
		return err
	}
	if err := addTodo(ctx, alice.db, groceries.ID, "butter"); err != nil {
		return err
	}
	say("   bob:   renames eggs to \"12 eggs\", ticks bread, creates a Hardware list with nails")
	if err := exec(ctx, bob.db,
		"UPDATE todos SET title = '12 eggs' WHERE title = 'eggs'",
		"UPDATE todos SET done = TRUE WHERE title = 'bread'"); err != nil {
		return err
	}
	hardware := &todoapp.List{ID: uuid.New(), Name: "Hardware"}
	if _, err := bob.db.NewInsert().Model(hardware).Exec(ctx); err != nil {
		return err
	}
	if err := addTodo(ctx, bob.db, hardware.ID, "nails"); err != nil {
		return err
	}

	// 3. Back online.
	say("\n3. back online: alice syncs, then bob (behind: he pulls, merges, pushes), then alice again")
	for _, n := range []*node{alice, bob, alice} {
		if err := sync(n); err != nil {
			return err
		}
	}
	say("   bob's merge follows dbsync's rules (merge.md): on the same row the merging node's change wins")
	say("   (eggs), and a change beats a delete (bread comes back, ticked)")

	// 4. Everyone holds the same data.
	say("\n4. converged state")
	states := map[string]string{}
	for _, n := range []struct {
		name string
		db   *bun.DB
	}{{"server", sdb}, {"alice", alice.db}, {"bob", bob.db}} {
		s, err := state(ctx, n.db)
		if err != nil {
			return err
		}
		states[n.name] = s
	}
	fmt.Fprint(out, states["server"])
	if states["alice"] != states["server"] || states["bob"] != states["server"] {
		return errors.New("the databases did not converge")
	}
	say("server, alice and bob hold identical data")
	return nil
}

func addTodo(ctx context.Context, db bun.IDB, list uuid.UUID, title string) error {
	_, err := db.NewInsert().Model(&todoapp.Todo{ID: uuid.New(), ListID: list, Title: title, Updated: time.Now().UTC()}).Exec(ctx)
	return err
}

func exec(ctx context.Context, db bun.IDB, stmts ...string) error {
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// state renders a database's lists and items, sorted.
func state(ctx context.Context, db bun.IDB) (string, error) {
	var lists []todoapp.List
	if err := db.NewSelect().Model(&lists).Order("name").Scan(ctx); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, l := range lists {
		var todos []todoapp.Todo
		if err := db.NewSelect().Model(&todos).Where("list_id = ?", l.ID).Order("title").Scan(ctx); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "   %s\n", l.Name)
		for _, t := range todos {
			mark := " "
			if t.Done {
				mark = "x"
			}
			fmt.Fprintf(&b, "     [%s] %s\n", mark, t.Title)
		}
	}
	return b.String(), nil
}
