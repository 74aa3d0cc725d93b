package dialect

import (
	"context"
	"database/sql"
	"encoding/hex"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

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

// rawOf returns the database/sql handle of db, and whether db is a
// transaction.
func rawOf(db bun.IDB) (raw Raw, inTx bool) {
	switch d := db.(type) {
	case bun.Tx:
		return d.Tx, true
	case *bun.Tx:
		return d.Tx, true
	case *bun.DB:
		return d.DB, false
	case bun.Conn:
		return d.Conn, false
	case *bun.Conn:
		return d.Conn, false
	}
	return nil, false
}

// PrepareRows returns the transaction db (a bun.Tx) when writing many rows
// through it is fastest with one prepared single-row statement executed
// per row: on SQLite, where that statement is compiled once instead of a
// multi-row literal INSERT per batch, and executing it costs no round
// trip. It returns nil on PostgreSQL (a round trip per row) and outside a
// transaction (a transaction per row).
func PrepareRows(db bun.IDB) *sql.Tx {
	if MustOf(db) != SQLite {
		return nil
	}
	raw, inTx := rawOf(db)
	if !inTx {
		return nil
	}
	return raw.(*sql.Tx)
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
	raw, _ := rawOf(db)
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

// SQLiteArg returns the value to bind in place of a SQLite literal as bun
// writes it (schema.Field.AppendValue with the SQLite dialect), such that
// the database stores exactly what the literal stores: NULL, TRUE and
// FALSE (1 and 0), an integer (int64; one beyond int64 is a REAL, as
// SQLite reads it), a decimal (float64), a quoted string (text, quotes
// undoubled) or X'…' (a blob, never nil). ok is false for anything else
// (an expression, bun's ?!(error) marker): the caller writes that value
// as a literal.
func SQLiteArg(lit []byte) (v any, ok bool) {
	if len(lit) == 0 {
		return nil, false
	}
	switch string(lit) {
	case "NULL":
		return nil, true
	case "TRUE":
		return int64(1), true
	case "FALSE":
		return int64(0), true
	}
	switch c := lit[0]; {
	case c == '\'':
		return unquote(lit)
	case c == 'X' && len(lit) >= 3 && lit[1] == '\'' && lit[len(lit)-1] == '\'':
		b := make([]byte, hex.DecodedLen(len(lit)-3))
		if _, err := hex.Decode(b, lit[2:len(lit)-1]); err != nil {
			return nil, false
		}
		return b, true
	case c == '-' || c >= '0' && c <= '9':
		return number(lit)
	}
	return nil, false
}

// unquote reads a whole quoted SQL string literal, in which a doubled
// quote stands for one.
func unquote(lit []byte) (any, bool) {
	if len(lit) < 2 || lit[len(lit)-1] != '\'' {
		return nil, false
	}
	body := lit[1 : len(lit)-1]
	n := 0
	for i := 0; i < len(body); i++ {
		if body[i] == '\'' {
			if i+1 == len(body) || body[i+1] != '\'' {
				return nil, false // the literal ends before the value does
			}
			i++
			n++
		}
	}
	if n == 0 {
		return string(body), true
	}
	out := make([]byte, 0, len(body)-n)
	for i := 0; i < len(body); i++ {
		out = append(out, body[i])
		if body[i] == '\'' {
			i++
		}
	}
	return string(out), true
}

// number reads -?digits(.digits)? as SQLite does: an integer when it has
// no point and fits an int64, else a REAL.
func number(lit []byte) (any, bool) {
	s := lit
	if s[0] == '-' {
		s = s[1:]
	}
	digits, point := 0, -1
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && point < 0 && i > 0:
			point = i
		default:
			return nil, false
		}
	}
	if digits == 0 || point == len(s)-1 {
		return nil, false
	}
	if point < 0 {
		if n, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
			return n, true
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, false
	}
	return f, true
}
