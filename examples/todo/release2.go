package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
)

// Release 2 of the to-do application (flag -v2) gives items a note: the
// local database is migrated (todoapp.MigrateV2) and the note command
// appears. A release-1 node keeps syncing with a release-2 server; the
// first sync after a node's upgrade brings the notes of its items.

const usageV2 = `  note ID TEXT          (-v2) set an item's note
  notes                 (-v2) the items that have a note
`

// setup prepares the database of the chosen release.
func setup(ctx context.Context, db *bun.DB, v2 bool) (*dbsync.Registry, error) {
	if v2 {
		return todoapp.SetupV2(ctx, db)
	}
	return todoapp.Setup(ctx, db)
}

// runV2 runs the commands of release 2; handled is false for the others.
func runV2(ctx context.Context, db bun.IDB, cmd string, rest []string, out io.Writer) (handled bool, err error) {
	switch cmd {
	case "note":
		if len(rest) != 2 {
			return true, fmt.Errorf("note takes 2 argument(s)\n%s", usage)
		}
		t, err := findTodo(ctx, db, rest[0])
		if err != nil {
			return true, err
		}
		_, err = db.NewUpdate().Model((*todoapp.TodoV2)(nil)).Set("note = ?", rest[1]).Set("updated = ?", time.Now().UTC()).
			Where("id = ?", t.ID).Exec(ctx)
		if err == nil {
			fmt.Fprintf(out, "noted %s %s: %s\n", t.ID.String()[:8], t.Title, rest[1])
		}
		return true, err
	case "notes":
		var todos []todoapp.TodoV2
		if err := db.NewSelect().Model(&todos).Where("note IS NOT NULL").Order("title").Scan(ctx); err != nil {
			return true, err
		}
		for _, t := range todos {
			fmt.Fprintf(out, "%s %s: %s\n", t.ID.String()[:8], t.Title, *t.Note)
		}
		return true, nil
	}
	return false, nil
}
