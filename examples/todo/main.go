// Command todo is the client of the to-do example: it works on its own
// SQLite file, online or not, and syncs with a todo-server on demand. A
// device belongs to one user: the server binds it to the user of its token
// when it registers (on first use); it holds that user's lists and the
// lists others shared with the user, and nothing else.
//
//	go run ./examples/todo add-list Groceries   # registers on first use
//	go run ./examples/todo add Groceries milk   # prints the new item's id
//	go run ./examples/todo share Groceries bob  # bob's devices receive it
//	go run ./examples/todo show
//	go run ./examples/todo done 3f2a            # an id prefix
//	go run ./examples/todo sync
//
// Flags: -db (default todo.db), -server (default
// http://127.0.0.1:8080/sync), -token (the user's token on the
// todo-server; default: env TODO_TOKEN); -h lists the commands and flags.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/merge"
)

const usage = `usage: todo [-db FILE] [-server URL] [-token TOKEN] COMMAND
commands:
  show                  lists (others' as OWNER/NAME) and their items
  add-list NAME         create a list of yours (registers on first use)
  rm-list NAME          delete a list of yours and its items
  share LIST USER       share a list with a user: their devices receive it
  unshare LIST USER     stop sharing it: it leaves their devices
  add LIST TITLE        add an item to a list (LIST: NAME or OWNER/NAME)
  edit ID TITLE         rename an item (ID: a prefix of the item id)
  done ID | undo ID     tick or untick an item
  rm ID                 delete an item
  sync                  push and pull with the server (registers on first use)
  status                the user, the version held and the unpushed changes
  discard               give up the unpushed changes a sync refused as out of
                        this device's scope
  repair [-force]       replace the local data with the server's (registers
                        on first use; -force drops unpushed changes)
` + usageV2 + `flags:
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
	dbPath := fs.String("db", "todo.db", "local SQLite `file`")
	url := fs.String("server", "http://127.0.0.1:8080/sync", "sync server `URL`")
	token := fs.String("token", "", "registration `token` of the server (default: env TODO_TOKEN)")
	v2 := fs.Bool("v2", false, "run release 2 of the application (items get a note; migrates the database)")
	printUsage := func() {
		fmt.Fprint(out, usage)
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		printUsage()
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err == nil {
			err = errors.New("no command given")
		}
		return err
	}
	if *token == "" {
		*token = os.Getenv("TODO_TOKEN")
	}
	db, err := todoapp.Open(*dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := setup(ctx, db, *v2)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, db, reg, &client.Config{
		URL:        *url,
		Logger:     slog.New(slog.DiscardHandler),
		Policies:   map[string]merge.Policy{"todos": merge.LastWriteWins("updated")},
		OnProgress: progressPrinter(out, isTerminal(out)),
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
		user, err := c.UserID(ctx)
		if err != nil && !errors.Is(err, dbsync.ErrNotRegistered) {
			return err
		}
		return show(ctx, db, user, out)
	case "add-list":
		if err := need(1); err != nil {
			return err
		}
		// The list's owner is the user the server bound this device to.
		user, err := me(ctx, c, *token, out)
		if err != nil {
			return err
		}
		if _, err := db.NewInsert().Model(&todoapp.List{ID: uuid.New(), OwnerID: user, Name: rest[0]}).Exec(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "added list %s\n", rest[0])
		return nil
	case "rm-list":
		if err := need(1); err != nil {
			return err
		}
		user, err := c.UserID(ctx)
		if err != nil && !errors.Is(err, dbsync.ErrNotRegistered) {
			return err
		}
		res, err := db.NewDelete().Model((*todoapp.List)(nil)).Where("name = ? AND owner_id = ?", rest[0], user).Exec(ctx)
		if err := expectOne(res, err, "list of yours named "+rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed list %s and its items\n", rest[0])
		return nil
	case "share", "unshare":
		if err := need(2); err != nil {
			return err
		}
		l, err := findList(ctx, c, db, rest[0])
		if err != nil {
			return err
		}
		if cmd == "unshare" {
			res, err := db.NewDelete().Model((*todoapp.Member)(nil)).Where("list_id = ? AND user_id = ?", l.ID, rest[1]).Exec(ctx)
			if err := expectOne(res, err, "member "+rest[1]+" of "+rest[0]); err != nil {
				return err
			}
			fmt.Fprintf(out, "unshared %s with %s\n", rest[0], rest[1])
			return nil
		}
		if rest[1] == l.OwnerID {
			return fmt.Errorf("%s owns %s", rest[1], rest[0])
		}
		n, err := db.NewSelect().Model((*todoapp.Member)(nil)).Where("list_id = ? AND user_id = ?", l.ID, rest[1]).Count(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s is already shared with %s", rest[0], rest[1])
		}
		if _, err := db.NewInsert().Model(&todoapp.Member{ID: uuid.New(), ListID: l.ID, UserID: rest[1]}).Exec(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "shared %s with %s\n", rest[0], rest[1])
		return nil
	case "add":
		if err := need(2); err != nil {
			return err
		}
		l, err := findList(ctx, c, db, rest[0])
		if err != nil {
			return err
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
		id := t.ID.String()[:8]
		switch cmd {
		case "rm":
			if _, err := db.NewDelete().Model(t).WherePK().Exec(ctx); err != nil {
				return err
			}
			fmt.Fprintf(out, "removed %s %s\n", id, t.Title)
			return nil
		case "edit":
			fmt.Fprintf(out, "renamed %s %s to %s\n", id, t.Title, rest[1])
			t.Title = rest[1]
		case "done":
			t.Done = true
			fmt.Fprintf(out, "done %s %s\n", id, t.Title)
		default:
			t.Done = false
			fmt.Fprintf(out, "not done %s %s\n", id, t.Title)
		}
		t.Updated = time.Now().UTC()
		_, err = db.NewUpdate().Model(t).WherePK().Exec(ctx)
		return err
	case "sync":
		if err := need(0); err != nil {
			return err
		}
		if err := register(ctx, c, *token, out); err != nil {
			return err
		}
		res, err := c.Sync(ctx)
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) {
			return fmt.Errorf("%w\nrename the local rows named above (another node used the same name) and sync again", err)
		}
		var se *dbsync.ScopeError
		if errors.As(err, &se) {
			return fmt.Errorf("%w\nthe rows named above are not yours to write, or left this device (a list unshared); "+
				"`todo discard` gives up the changes to them", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "synced: %s\n", res)
		return nil
	case "discard":
		if err := need(0); err != nil {
			return err
		}
		_, err := c.Sync(ctx)
		var se *dbsync.ScopeError
		if !errors.As(err, &se) {
			if err == nil {
				fmt.Fprintln(out, "nothing to discard")
			}
			return err
		}
		if err := c.DiscardPending(ctx, se.Entries); err != nil {
			return err
		}
		fmt.Fprintf(out, "discarded the changes to %d row(s)\n", len(se.Entries))
		res, err := c.Sync(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "synced: %s\n", res)
		return nil
	case "status":
		if err := need(0); err != nil {
			return err
		}
		switch user, err := c.UserID(ctx); {
		case errors.Is(err, dbsync.ErrNotRegistered):
			fmt.Fprintln(out, "not registered")
		case err != nil:
			return err
		default:
			fmt.Fprintf(out, "user %s\n", user)
		}
		version, err := c.Version(ctx)
		if err != nil {
			return err
		}
		pending, err := c.Pending(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "version %d held, %d unpushed change(s)\n", version, len(pending))
		for _, op := range pending {
			fmt.Fprintf(out, "  %s %s %s\n", op.Command, op.Table, op.RowID)
		}
		return nil
	case "repair":
		force := len(rest) == 1 && rest[0] == "-force"
		if len(rest) > 0 && !force {
			return fmt.Errorf("repair takes only -force\n%s", usage)
		}
		if err := register(ctx, c, *token, out); err != nil {
			return err
		}
		res, err := c.Repair(ctx, &client.RepairOptions{Force: force})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "repaired: %d rows, version %d\n", res.Rows, res.VersionID)
		return nil
	}
	if *v2 {
		if handled, err := runV2(ctx, db, cmd, rest, out); handled {
			return err
		}
	}
	printUsage()
	return fmt.Errorf("unknown command %q", cmd)
}

// register registers the node with the server unless it has already.
func register(ctx context.Context, c *client.Client, token string, out io.Writer) error {
	ok, err := c.IsRegistered(ctx)
	if err != nil || ok {
		return err
	}
	var cred string
	if token != "" {
		cred = "Bearer " + token
	}
	node, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: cred})
	if err != nil {
		return err
	}
	user := "no user"
	if node.RegistryUserID != nil {
		user = "user " + *node.RegistryUserID
	}
	fmt.Fprintf(out, "registered as node %d of %s\n", node.NodeID, user)
	return nil
}

// me returns the user the device belongs to, registering it first if it
// has not (the server binds it to the user of its token).
func me(ctx context.Context, c *client.Client, token string, out io.Writer) (string, error) {
	if err := register(ctx, c, token, out); err != nil {
		return "", err
	}
	user, err := c.UserID(ctx)
	if err == nil && user == "" {
		err = errors.New("the server bound this device to no user")
	}
	return user, err
}

// findList finds a list the device holds by name: NAME (the user's own
// list of that name first, else the only one shared with the user) or
// OWNER/NAME.
func findList(ctx context.Context, c *client.Client, db bun.IDB, name string) (*todoapp.List, error) {
	q := db.NewSelect().Model((*todoapp.List)(nil))
	if owner, n, ok := strings.Cut(name, "/"); ok {
		q = q.Where("owner_id = ? AND name = ?", owner, n)
	} else {
		q = q.Where("name = ?", name)
	}
	var lists []todoapp.List
	if err := q.Scan(ctx, &lists); err != nil {
		return nil, err
	}
	if len(lists) == 1 {
		return &lists[0], nil
	}
	if len(lists) == 0 {
		return nil, fmt.Errorf("no list %q", name)
	}
	user, err := c.UserID(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range lists {
		if l.OwnerID == user {
			return &l, nil
		}
	}
	return nil, fmt.Errorf("%d lists named %q are shared with you: name one as OWNER/NAME", len(lists), name)
}

// progressPrinter shows push, pull and repair progress: with redraw (on a
// terminal) one line redrawn in place, else (a pipe, a file) a plain line
// when a phase starts and one when it is done.
func progressPrinter(out io.Writer, redraw bool) dbsync.ProgressFunc {
	last := ""
	return func(p dbsync.Progress) {
		line := fmt.Sprintf("%s %s: %d bytes, %d operations, %d rows", p.Op, p.Phase, p.Bytes, p.Operations, p.Rows)
		switch {
		case redraw && p.Phase == "done":
			fmt.Fprintf(out, "\r%s\x1b[K\n", line) // \x1b[K: clear what a longer line left
		case redraw:
			fmt.Fprintf(out, "\r%s\x1b[K", line)
		case p.Phase != last:
			fmt.Fprintln(out, line)
		}
		last = p.Phase
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
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

// show prints the lists, the user's own first by name, then the others' as
// OWNER/NAME, each with the users it is shared with, and their items.
func show(ctx context.Context, db bun.IDB, user string, out io.Writer) error {
	var lists []todoapp.List
	if err := db.NewSelect().Model(&lists).Order("owner_id", "name").Scan(ctx); err != nil {
		return err
	}
	// The user's own lists first.
	slices.SortStableFunc(lists, func(a, b todoapp.List) int {
		mine := func(l todoapp.List) int {
			if l.OwnerID == user {
				return 0
			}
			return 1
		}
		return cmp.Compare(mine(a), mine(b))
	})
	for _, l := range lists {
		heading := l.Name
		if l.OwnerID != user {
			heading = l.OwnerID + "/" + l.Name
		}
		var members []string
		if err := db.NewSelect().Model((*todoapp.Member)(nil)).Column("user_id").Where("list_id = ?", l.ID).
			Order("user_id").Scan(ctx, &members); err != nil {
			return err
		}
		if len(members) > 0 {
			heading += " (shared with " + strings.Join(members, ", ") + ")"
		}
		fmt.Fprintln(out, heading)
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
