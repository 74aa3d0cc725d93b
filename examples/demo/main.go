// Command demo runs the to-do example end to end in one process, with
// nothing but Go installed: a sync server on an embedded SQLite database,
// behind real HTTP on a loopback port, with scopes (partial sync), and
// three devices of two users, each on its own SQLite file: Alice's phone
// and laptop, Bob's phone. Alice shares a list with Bob and keeps a private
// one; Alice and Bob go offline, make conflicting edits to the shared
// list, sync, and every device holds exactly the server's rows of its
// user. Bob's phone never receives Alice's private list; his attempt to
// take the shared list over is refused; when Alice unshares it, it leaves
// his phone.
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

	"github.com/go-dbsync/dbsync"
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

// device is one client node of the demo.
type device struct {
	name, user string
	db         *bun.DB
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
	srv, err := server.New(ctx, sdb, sreg, &server.Config{
		Logger: quiet,
		// Registration binds a device to the user its token proves (the
		// application's login would stand here).
		AuthorizeRegister: todoapp.UserTokens(map[string]string{"alice-token": "alice", "bob-token": "bob"}),
		// Each user's devices hold that user's lists and those shared
		// with the user, and may write only those.
		Scopes: todoapp.Scopes(),
	})
	if err != nil {
		return err
	}
	url, stop, err := todoapp.Serve(srv)
	if err != nil {
		return err
	}
	defer stop()
	say("server listening on %s (SQLite %s)", url, filepath.Join(dir, "server.db"))

	newDevice := func(user, name string) (*device, error) {
		db, err := todoapp.Open(filepath.Join(dir, name+".db"))
		if err != nil {
			return nil, err
		}
		reg, err := todoapp.Setup(ctx, db)
		if err != nil {
			db.Close()
			return nil, err
		}
		c, err := client.New(ctx, db, reg, &client.Config{URL: url, Logger: quiet})
		if err != nil {
			db.Close()
			return nil, err
		}
		// The token is the device's login; the server's hook binds the
		// node to the token's user, and the node learns which.
		n, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: "Bearer " + user + "-token"})
		if err != nil {
			db.Close()
			return nil, err
		}
		bound, err := c.UserID(ctx)
		if err != nil {
			db.Close()
			return nil, err
		}
		say("%s registered with %s's token: node %d, bound to user %s", name, user, n.NodeID, bound)
		return &device{name: name, user: bound, db: db, Client: c}, nil
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
	alice, laptop, bob := devices[0], devices[1], devices[2]

	sync := func(ds ...*device) error {
		for _, d := range ds {
			res, err := d.Sync(ctx)
			if err != nil {
				return fmt.Errorf("%s: sync: %w", d.name, err)
			}
			say("%s synced: %s", d.name, res)
		}
		return nil
	}
	// show prints what each device holds, and checks that it is exactly
	// the server's rows of its user (and that bob never holds the diary).
	show := func(ds ...*device) error {
		for _, d := range ds {
			got, err := state(ctx, d.db, "")
			if err != nil {
				return err
			}
			want, err := state(ctx, sdb, d.user)
			if err != nil {
				return err
			}
			say("   %s holds:\n%s", d.name, indent(got))
			if got != want {
				return fmt.Errorf("%s holds\n%sthe server's rows of %s are\n%s", d.name, got, d.user, want)
			}
			if strings.Contains(got, "Diary") && d.user != "alice" {
				return fmt.Errorf("%s received alice's private diary", d.name)
			}
		}
		return nil
	}

	// 1. Alice creates a list she shares with Bob, and a private one.
	say("\n1. alice's phone creates Groceries (milk, eggs, bread), shared with bob, and a private Diary")
	groceries := &todoapp.List{ID: uuid.New(), OwnerID: "alice", Name: "Groceries"}
	diary := &todoapp.List{ID: uuid.New(), OwnerID: "alice", Name: "Diary"}
	if _, err := alice.db.NewInsert().Model(&[]*todoapp.List{groceries, diary}).Exec(ctx); err != nil {
		return err
	}
	for _, title := range []string{"milk", "eggs", "bread"} {
		if err := addTodo(ctx, alice.db, groceries.ID, title); err != nil {
			return err
		}
	}
	if err := addTodo(ctx, alice.db, diary.ID, "secret"); err != nil {
		return err
	}
	if _, err := alice.db.NewInsert().Model(&todoapp.Member{ID: uuid.New(), ListID: groceries.ID, UserID: "bob"}).Exec(ctx); err != nil {
		return err
	}
	if err := sync(alice, laptop, bob); err != nil {
		return err
	}
	if err := show(bob); err != nil {
		return err
	}

	// 2. Both go offline and edit the same items.
	say("\n2. offline, both edit Groceries:")
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
	say("   bob:   renames eggs to \"12 eggs\", ticks bread, creates his own Hardware list with nails")
	if err := exec(ctx, bob.db,
		"UPDATE todos SET title = '12 eggs' WHERE title = 'eggs'",
		"UPDATE todos SET done = TRUE WHERE title = 'bread'"); err != nil {
		return err
	}
	hardware := &todoapp.List{ID: uuid.New(), OwnerID: "bob", Name: "Hardware"}
	if _, err := bob.db.NewInsert().Model(hardware).Exec(ctx); err != nil {
		return err
	}
	if err := addTodo(ctx, bob.db, hardware.ID, "nails"); err != nil {
		return err
	}

	// 3. Back online.
	say("\n3. back online: alice's phone syncs, then bob's (behind: he pulls, merges, pushes), then alice's phone and laptop")
	if err := sync(alice, bob, alice, laptop); err != nil {
		return err
	}
	say("   bob's merge follows dbsync's rules (merge.md): on the same row the merging node's change wins")
	say("   (eggs), and a change beats a delete (bread comes back, ticked)")

	// 4. Every device holds its user's rows.
	say("\n4. every device holds exactly the server's rows of its user:")
	if err := show(alice, laptop, bob); err != nil {
		return err
	}

	// 5. Bob tries to take the shared list over: refused, nothing written.
	say("\n5. bob's phone makes Groceries his (owner_id = bob)")
	if _, err := bob.db.NewUpdate().Model((*todoapp.List)(nil)).Set("owner_id = ?", "bob").Where("id = ?", groceries.ID).Exec(ctx); err != nil {
		return err
	}
	_, err = bob.Sync(ctx)
	var se *dbsync.ScopeError
	if !errors.As(err, &se) {
		return fmt.Errorf("bob took the list over: %v", err)
	}
	say("   refused by the server (403 out_of_scope, %d row); bob's phone gives the change up", len(se.Entries))
	// The row stays in bob's scope, so no pull replaces it: the
	// application restores it, then drops the refused change (merge.md S5).
	if _, err := bob.db.NewUpdate().Model((*todoapp.List)(nil)).Set("owner_id = ?", "alice").Where("id = ?", groceries.ID).Exec(ctx); err != nil {
		return err
	}
	if err := bob.DiscardPending(ctx, se.Entries); err != nil {
		return err
	}

	// 6. Alice unshares the list: it leaves Bob's phone.
	say("\n6. alice's laptop unshares Groceries")
	if _, err := laptop.db.NewDelete().Model((*todoapp.Member)(nil)).Where("list_id = ? AND user_id = ?", groceries.ID, "bob").Exec(ctx); err != nil {
		return err
	}
	if err := sync(laptop, alice, bob); err != nil {
		return err
	}
	if err := show(alice, laptop, bob); err != nil {
		return err
	}
	say("every device holds exactly its user's rows; bob's phone never held the diary")
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

// state renders a database's lists (those user owns or is a member of,
// when user is set: the server's rows in the user's scope), their members
// and items, sorted.
func state(ctx context.Context, db bun.IDB, user string) (string, error) {
	var lists []todoapp.List
	q := db.NewSelect().Model(&lists).Order("name")
	if user != "" {
		q = q.Where("owner_id = ? OR id IN (SELECT list_id FROM list_members WHERE user_id = ?)", user, user)
	}
	if err := q.Scan(ctx); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, l := range lists {
		var members []string
		if err := db.NewSelect().Model((*todoapp.Member)(nil)).Column("user_id").Where("list_id = ?", l.ID).
			Order("user_id").Scan(ctx, &members); err != nil {
			return "", err
		}
		shared := ""
		if len(members) > 0 {
			shared = ", shared with " + strings.Join(members, ", ")
		}
		fmt.Fprintf(&b, "%s (%s's%s)\n", l.Name, l.OwnerID, shared)
		var todos []todoapp.Todo
		if err := db.NewSelect().Model(&todos).Where("list_id = ?", l.ID).Order("title").Scan(ctx); err != nil {
			return "", err
		}
		for _, t := range todos {
			mark := " "
			if t.Done {
				mark = "x"
			}
			fmt.Fprintf(&b, "  [%s] %s\n", mark, t.Title)
		}
	}
	if b.Len() == 0 {
		return "nothing\n", nil
	}
	return b.String(), nil
}

// indent indents each line of s by five spaces.
func indent(s string) string {
	return "     " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n     ")
}
