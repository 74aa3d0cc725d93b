package store

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// preparedRows is the number of rows per execution of a prepared
// statement, at most. One row per statement would compile nothing but pay,
// per row, for the statement journal SQLite opens for a statement that
// may fail halfway (foreign keys, triggers, RETURNING): with the pure-Go
// driver each costs an mmap and a munmap, which made single-row writes 10
// to 15 times slower than multi-row literals in BenchmarkWrite. 100 rows
// pay it rarely and stay far below SQLite's 32766 parameters.
const preparedRows = 100

// bindTuples is n VALUES tuples of cols placeholders: (?, ?), (?, ?).
func bindTuples(n, cols int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ")
}

// writePrepared writes rows through tx (the SQLite transaction under db)
// with statements head + tuples + tail prepared once per call, each
// executed for up to preparedRows rows; when inserted is not nil, the
// statement returns the keys it inserts, which are recorded there. Each
// value is bound as the literal bun writes for it (dialect.SQLiteArg), so
// the database stores the same thing. writePrepared stops at the first
// group of rows with a value that has no such binding and returns how many
// rows it wrote: the caller writes the rest as literals. Its statements
// are closed before it returns.
func writePrepared(ctx context.Context, db bun.IDB, tx *sql.Tx, t *dbsync.Table, rows []reflect.Value, head, tail string, inserted map[string]bool) (done int, err error) {
	per := min(len(rows), max(1, min(preparedRows, 32766/len(t.Columns))))
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, s := range stmts {
			if cerr := s.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("write %s: %w", t.Name, cerr)
			}
		}
	}()
	gen := schema.NewQueryGen(db.Dialect())
	args := make([]any, 0, per*len(t.Columns))
	var lit []byte
	for done < len(rows) {
		group := rows[done:min(done+per, len(rows))]
		args = args[:0]
		for _, strct := range group {
			for _, c := range t.Columns {
				lit = c.Field().AppendValue(gen, lit[:0], strct)
				v, ok := dialect.SQLiteArg(lit)
				if !ok {
					return done, nil
				}
				args = append(args, v)
			}
		}
		stmt := stmts[len(group)]
		if stmt == nil {
			if stmt, err = tx.PrepareContext(ctx, head+bindTuples(len(group), len(t.Columns))+tail); err != nil {
				return done, fmt.Errorf("write %s: %w", t.Name, err)
			}
			stmts[len(group)] = stmt
		}
		if inserted == nil {
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return done, fmt.Errorf("write %s: %w", t.Name, err)
			}
		} else {
			res, err := stmt.QueryContext(ctx, args...)
			if err == nil {
				err = collectKeys(res, inserted)
			}
			if err != nil {
				return done, fmt.Errorf("write %s: %w", t.Name, err)
			}
		}
		done += len(group)
	}
	return done, nil
}
