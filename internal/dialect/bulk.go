package dialect

import (
	"context"
	"database/sql"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// Raw is the database/sql handle under a bun handle: a *sql.DB, *sql.Conn
// or *sql.Tx. Statements run through it bypass bun's query formatting (the
// arguments go to the driver as they are) and bun's query hooks.
type Raw interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// rawOf returns the database/sql handle of db.
func rawOf(db bun.IDB) Raw {
	switch d := db.(type) {
	case bun.Tx:
		return d.Tx
	case *bun.Tx:
		return d.Tx
	case *bun.DB:
		return d.DB
	case bun.Conn:
		return d.Conn
	case *bun.Conn:
		return d.Conn
	}
	return nil
}

// PlainText reports whether s is valid UTF-8 without NUL: bound as an
// argument as it is, it is stored as bun's literal of it stores it (bun
// replaces invalid bytes and refuses NUL).
func PlainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// pgxStdlib is the package of the pgx database/sql driver.
const pgxStdlib = "github.com/jackc/pgx/v5/stdlib"

// ArrayArgs returns the database/sql handle of db when it is PostgreSQL
// through the pgx driver, which takes Go slices ([]string, []int64,
// []*int64) as array arguments ($1::text[]) in every query execution mode,
// so that many rows can be written by one statement over unnest(...):
// parsed once, with binary or quoted array parameters instead of a
// literal VALUES list. It returns nil otherwise.
func ArrayArgs(db bun.IDB) Raw {
	if MustOf(db) != Postgres {
		return nil
	}
	raw := rawOf(db)
	if raw == nil {
		return nil
	}
	drv := db.NewSelect().DB().Driver()
	if drv == nil {
		return nil
	}
	typ := reflect.TypeOf(drv)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.PkgPath() != pgxStdlib {
		return nil
	}
	return raw
}

// BinaryArgs returns the arguments to pass through db's Raw handle (not
// bun: bun formats its arguments into the statement) for a statement
// binding or reading large bytea values. On PostgreSQL through pgx they
// are led by pgx.QueryExecModeDescribeExec, so that pgx sends []byte
// arguments and reads bytea results in binary, whatever execution mode
// the connection defaults to: in the simple protocol, often chosen with
// bun (whose statements carry their values as literals), pgx would quote
// each argument into the statement as hex text and decode a result from
// hex, costing more CPU than the database's own work for a megabyte body.
// The mode costs one more round trip (the statement's description). Other
// drivers get args as they are.
func BinaryArgs(db bun.IDB, args ...any) []any {
	if ArrayArgs(db) == nil {
		return args
	}
	return append([]any{pgx.QueryExecModeDescribeExec}, args...)
}
