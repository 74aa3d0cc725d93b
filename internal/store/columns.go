package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// ErrColumnMissing is CheckColumns' error for a model column its table
// lacks (oplog.ErrColumnMissing is this error).
var ErrColumnMissing = errors.New("dbsync: tracked column does not exist")

// CheckColumns refuses models whose columns the capture triggers and the
// writes of received rows cannot use: a column the table lacks
// (ErrColumnMissing: the triggers would read it, and every write of the
// application to the table would fail), and a generated column
// (dbsync.ErrInvalidModel: the database refuses a written value; each node
// computes its own). SQLite matches names without regard to case, as it
// does.
func CheckColumns(ctx context.Context, db bun.IDB, tables []*dbsync.Table) error {
	fold := dialect.MustOf(db) == dialect.SQLite
	var missing, generated []string
	for _, t := range tables {
		info, err := dialect.Columns(ctx, db, t.Name)
		if err != nil {
			return err
		}
		have := make(map[string]dialect.ColumnInfo, len(info))
		for name, ci := range info {
			if fold {
				name = strings.ToLower(name)
			}
			have[name] = ci
		}
		for _, c := range t.Columns {
			name := c.Name
			if fold {
				name = strings.ToLower(name)
			}
			switch ci, ok := have[name]; {
			case !ok:
				missing = append(missing, t.Name+"."+c.Name)
			case ci.Generated:
				generated = append(generated, t.Name+"."+c.Name)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrColumnMissing, strings.Join(missing, ", "))
	}
	if len(generated) > 0 {
		return fmt.Errorf("%w: %s: a generated column cannot be written: leave it out of the model, or tag its field bun:\",scanonly\" (each node computes its own)",
			dbsync.ErrInvalidModel, strings.Join(generated, ", "))
	}
	return nil
}
