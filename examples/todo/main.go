// Command todo is the client of the to-do example: it works on its own
// SQLite file, online or not, and syncs with a todo-server on demand.
//
//	go run ./examples/todo add-list Groceries
//	go run ./examples/todo add Groceries milk
//	go run ./examples/todo show
//	go run ./examples/todo done 3f2a        # an id prefix
//	go run ./examples/todo sync             # registers on first use
//
// Flags: -db (default todo.db), -server (default
// http://127.0.0.1:8080/sync), -token (the todo-server's registration
// token; default: env TODO_TOKEN).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/merge"
)

const usage = `usage: todo [-db FILE] [-server URL] COMMAND
commands:
  show                  lists and their items
  add-list NAME         create a list
  rm-list NAME          delete a list and its items
  add LIST TITLE        add an item to a list
  edit ID TITLE         rename an item (ID: a prefix of the item id)
  done ID | undo ID     tick or untick an item
  rm ID                 delete an item
  sync                  push and pull with the server (registers on first use)
  status                unpushed changes and the version held
  repair [-force]       replace the local data with the server's
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "todo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("todo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dbPath := fs.String("db", "todo.db", "local SQLite file")
	url := fs.String("server", "http://127.0.0.1:8080/sync", "sync server URL")
	token := fs.String("token", os.Getenv("TODO_TOKEN"), "registration token of the server (env TODO_TOKEN)")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprint(out, usage)
		return err
	}
	db, err := todoapp.Open(*dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := todoapp.Setup(ctx, db)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, db, reg, &client.Config{
		URL:      *url,
		Logger:   slog.New(slog.DiscardHandler),
		Policies: map[string]merge.Policy{"todos": merge.LastWriteWins("updated")},
		OnProgress: func(p dbsync.Progress) {
			if p.Phase != "done" {
				fmt.Fprintf(out, "\r%s %s: %d bytes, %d operations, %d rows", p.Op, p.Phase, p.Bytes, p.Operations, p.Rows)
			} else {
				fmt.Fprintln(out)
			}
		},
	})
	if err != nil {
		return err
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	need := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("%s takes %d argument(s)\n%s", cmd, n, usage)
		}
		return nil
	}
	switch cmd {
	case "show":
		return show(ctx, db, out)
	case "add-list":
		if err := need(1); err != nil {
			return err
		}
		_, err := db.NewInsert().Model(&todoapp.List{ID: uuid.New(), Name: rest[0]}).Exec(ctx)
		return err
	case "rm-list":
		if err := need(1); err != nil {
			return err
		}
		res, err := db.NewDelete().Model((*todoapp.List)(nil)).Where("name = ?", rest[0]).Exec(ctx)
		return expectOne(res, err, "list "+rest[0])
	case "add":
		if err := need(2); err != nil {
			return err
		}
		var l todoapp.List
		if err := db.NewSelect().Model(&l).Where("name = ?", rest[0]).Scan(ctx); err != nil {
			return fmt.Errorf("no list %q", rest[0])
		}
		t := &todoapp.Todo{ID: uuid.New(), ListID: l.ID, Title: rest[1], Updated: time.Now().UTC()}
		if _, err := db.NewInsert().Model(t).Exec(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "added %s %s\n", t.ID.String()[:8], t.Title)
		return nil
	case "edit", "done", "undo", "rm":
		n := 1
		if cmd == "edit" {
			n = 2
		}
		if err := need(n); err != nil {
			return err
		}
		t, err := findTodo(ctx, db, rest[0])
		if err != nil {
			return err
		}
		switch cmd {
		case "rm":
			_, err = db.NewDelete().Model(t).WherePK().Exec(ctx)
			return err
		case "edit":
			t.Title = rest[1]
		default:
			t.Done = cmd == "done"
		}
		t.Updated = time.Now().UTC()
		_, err = db.NewUpdate().Model(t).WherePK().Exec(ctx)
		return err
	case "sync":
		if ok, err := c.IsRegistered(ctx); err != nil {
			return err
		} else if !ok {
			var cred string
			if *token != "" {
				cred = "Bearer " + *token
			}
			node, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: cred})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "registered as node %d\n", node.NodeID)
		}
		res, err := c.Sync(ctx)
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) {
			return fmt.Errorf("%w\nrename the local rows named above (another node used the same name) and sync again", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "synced: %d push(es), %d pull(s), version %d\n", len(res.Pushes), len(res.Pulls), res.VersionID)
		return nil
	case "status":
		pending, err := c.Pending(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%d unpushed change(s)\n", len(pending))
		for _, op := range pending {
			fmt.Fprintf(out, "  %s %s %s\n", op.Command, op.Table, op.RowID)
		}
		return nil
	case "repair":
		force := len(rest) == 1 && rest[0] == "-force"
		res, err := c.Repair(ctx, &client.RepairOptions{Force: force})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "repaired: %d rows, version %d\n", res.Rows, res.VersionID)
		return nil
	}
	fmt.Fprint(out, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func expectOne(res interface{ RowsAffected() (int64, error) }, err error, what string) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("no %s", what)
	}
	return nil
}

func findTodo(ctx context.Context, db bun.IDB, prefix string) (*todoapp.Todo, error) {
	var todos []todoapp.Todo
	if err := db.NewSelect().Model(&todos).Scan(ctx); err != nil {
		return nil, err
	}
	var found []todoapp.Todo
	for _, t := range todos {
		if strings.HasPrefix(t.ID.String(), strings.ToLower(prefix)) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no item with id %s…", prefix)
	case 1:
		return &found[0], nil
	}
	return nil, fmt.Errorf("id %s… names %d items; give more digits", prefix, len(found))
}

func show(ctx context.Context, db bun.IDB, out io.Writer) error {
	var lists []todoapp.List
	if err := db.NewSelect().Model(&lists).Order("name").Scan(ctx); err != nil {
		return err
	}
	for _, l := range lists {
		fmt.Fprintln(out, l.Name)
		var todos []todoapp.Todo
		if err := db.NewSelect().Model(&todos).Where("list_id = ?", l.ID).Order("title").Scan(ctx); err != nil {
			return err
		}
		for _, t := range todos {
			mark := " "
			if t.Done {
				mark = "x"
			}
			fmt.Fprintf(out, "  [%s] %s  %s\n", mark, t.ID.String()[:8], t.Title)
		}
	}
	return nil
}
