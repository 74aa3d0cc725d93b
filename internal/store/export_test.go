package store

import (
	"context"
	"reflect"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
)

// Write modes, for benchmarks.
const (
	InsertOnly     = int(insertOnly)
	InsertOrUpdate = int(insertOrUpdate)
	InsertNew      = int(insertNew)
)

// WriteMode writes rows in mode as Write and WriteReporting do or, with
// literal, always as multi-row literal INSERTs (the path SQLite
// transactions took before prepared statements).
func WriteMode(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value, m int, literal bool) (map[string]bool, error) {
	mode := writeMode(m)
	if !literal {
		return write(ctx, db, t, rows, mode)
	}
	head, tail := insertSQL(t, mode)
	var inserted map[string]bool
	if mode == insertNew {
		inserted = make(map[string]bool, len(rows))
	}
	err := writeLiterals(ctx, db, t, rows, head, tail, inserted)
	return inserted, err
}
