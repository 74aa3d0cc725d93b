package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// bindTuple is a VALUES tuple of n placeholders: (?, ?, ?).
func bindTuple(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// writeEach writes rows through tx (the SQLite transaction under db) with
// query, a single-row INSERT prepared once and executed per row; when
// inserted is not nil, query returns the key of a row it inserts, which is
// recorded there. Each value is bound as the literal bun writes for it
// (dialect.SQLiteArg), so the database stores the same thing. writeEach
// stops at the first row with a value that has no such binding and returns
// how many rows it wrote: the caller writes the rest as literals. The
// statement is closed before it returns.
func writeEach(ctx context.Context, db bun.IDB, tx *sql.Tx, t *dbsync.Table, rows []reflect.Value, query string, inserted map[string]bool) (done int, err error) {
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", t.Name, err)
	}
	defer func() {
		if cerr := stmt.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write %s: %w", t.Name, cerr)
		}
	}()
	gen := schema.NewQueryGen(db.Dialect())
	args := make([]any, len(t.Columns))
	var lit []byte
	var key string
	for i, strct := range rows {
		for j, c := range t.Columns {
			lit = c.Field().AppendValue(gen, lit[:0], strct)
			v, ok := dialect.SQLiteArg(lit)
			if !ok {
				return i, nil
			}
			args[j] = v
		}
		if inserted == nil {
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return i, fmt.Errorf("write %s: %w", t.Name, err)
			}
			continue
		}
		switch err := stmt.QueryRowContext(ctx, args...).Scan(&key); {
		case err == nil:
			inserted[key] = true
		case !errors.Is(err, sql.ErrNoRows):
			return i, fmt.Errorf("write %s: %w", t.Name, err)
		}
	}
	return len(rows), nil
}
