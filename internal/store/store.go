// Package store reads and writes the rows of tracked tables generically,
// from dbsync's table metadata: by key in batches, streamed in key order,
// upserted and deleted in multi-row statements. Client and server share it.
//
// Rows are written as bun writes them, as multi-row literal INSERTs: on
// SQLite cheaper than statements prepared with bound values
// (BenchmarkWrite).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// Batch is the number of keys or rows per statement.
const Batch = 500

// KeyArgs parses keys (canonical text) into the values bound for t's
// primary key. A text key that is not valid UTF-8 without NUL (written by
// SQL, which stores any bytes as text) is a *dbsync.ValueError naming it:
// bun's literal of it would name another row (invalid bytes replaced) or
// fail (NUL), and JSON cannot carry it, so such a row was read as missing
// and never synced.
func KeyArgs(t *dbsync.Table, keys []string) ([]any, error) {
	args := make([]any, len(keys))
	for i, k := range keys {
		if t.KeyKind == protocol.KeyText && !dialect.PlainText(k) {
			return nil, &dbsync.ValueError{Table: t.Name, Key: k, Column: t.PK.Name,
				Err: errors.New("a key that is not valid UTF-8 without NUL cannot be synced: rewrite or delete the row with SQL (its key as a blob cast to text)")}
		}
		v, err := t.ParseKey(k)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	return args, nil
}

func newSlice(t *dbsync.Table) reflect.Value {
	return reflect.New(reflect.SliceOf(reflect.PointerTo(t.Schema().Type)))
}

// Load reads the rows with the given keys and calls fn with each row found
// (a struct value, not a pointer); missing keys are skipped. Runs of
// nearly consecutive integer keys are read by range scans, other keys
// Batch per query.
func Load(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, fn func(strct reflect.Value) error) error {
	if len(keys) == 0 {
		return nil
	}
	sel := selectList(t)
	if t.KeyKind == protocol.KeyInt {
		// Runs of nearly consecutive integer keys are read by range scans
		// (intRuns, as ExistingWhere probes them); rows in a run's gaps
		// are read and left out.
		runs, rest := intRuns(keys)
		if len(runs) > 0 {
			left := make(map[string]bool, len(rest))
			for _, k := range rest {
				left[k] = true
			}
			want := make(map[string]bool, len(keys)-len(rest))
			for _, k := range keys {
				if !left[k] {
					want[k] = true
				}
			}
			q := fmt.Sprintf("SELECT %s FROM %s WHERE %s BETWEEN ? AND ?", sel, t.Schema().SQLName, t.PK.Field().SQLName)
			for _, r := range runs {
				if err := scanRows(ctx, db, t, q, []any{r[0], r[1]}, func(strct reflect.Value) error {
					k := t.Codec().KeyOf(strct)
					if !want[k] {
						return nil
					}
					want[k] = false // read: a key of rest written otherwise ("08") names it again
					return fn(strct)
				}); err != nil {
					return err
				}
			}
			keys = rest
			each := fn
			fn = func(strct reflect.Value) error {
				if left, asked := want[t.Codec().KeyOf(strct)]; asked && !left {
					return nil
				}
				return each(strct)
			}
		}
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IN (?)", sel, t.Schema().SQLName, t.PK.Field().SQLName)
	for start := 0; start < len(keys); start += Batch {
		args, err := KeyArgs(t, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return err
		}
		if err := scanRows(ctx, db, t, q, []any{bun.List(args)}, fn); err != nil {
			return err
		}
	}
	return nil
}

// selectList is the table's columns, in table order, for a SELECT.
func selectList(t *dbsync.Table) string {
	var b strings.Builder
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(c.Field().SQLName))
	}
	return b.String()
}

// scanRows runs a query selecting selectList(t) and hands each row, scanned
// into a new model struct by bun's column scanners, to fn.
func scanRows(ctx context.Context, db bun.IDB, t *dbsync.Table, q string, args []any, fn func(strct reflect.Value) error) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("load %s: %w", t.Name, err)
	}
	defer rows.Close()
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(t.Columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("load %s: %w", t.Name, err)
		}
		strct := t.Codec().NewModel().Elem()
		for i, c := range t.Columns {
			if err := c.Field().ScanValue(strct, numberText(c.Field(), vals[i])); err != nil {
				// A value the model's field cannot hold, written by SQL
				// (SQLite stores 'lots' in an INTEGER column): named, so
				// that the application can rewrite the row.
				return &dbsync.ValueError{Table: t.Name, Key: rawKey(t, vals), Column: c.Name,
					Err: fmt.Errorf("the database holds a value the model's field cannot hold: %w", err)}
			}
		}
		if err := fn(strct); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load %s: %w", t.Name, err)
	}
	return nil
}

// rawKey returns the text of the primary key among a row's scanned
// values (in t.Columns' order), "" when it has none.
func rawKey(t *dbsync.Table, vals []any) string {
	for i, c := range t.Columns {
		if c != t.PK || vals[i] == nil {
			continue
		}
		if b, ok := vals[i].([]byte); ok {
			return string(b)
		}
		return fmt.Sprint(vals[i])
	}
	return ""
}

var scannerType = reflect.TypeFor[sql.Scanner]()

// numberText returns v, but a number as its text (JSON's form: 1000,
// 1.5, 1e+300) for a field bun does not scan numbers into (bytes, a
// json.RawMessage, a map, slice or struct it decodes from JSON): SQLite
// converts text written into a column of numeric affinity (a type name
// such as JSONB, NUMERIC) to a number when it reads as one, and bun
// would refuse the row, failing every load of the table (a push, a
// pull's or query's answer).
func numberText(f *schema.Field, v any) any {
	switch v.(type) {
	case int64, float64:
	default:
		return v
	}
	typ := f.IndirectType
	switch typ.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct:
	default:
		return v // bun scans a number into it
	}
	if typ == timeType || typ.Implements(scannerType) || reflect.PointerTo(typ).Implements(scannerType) {
		return v // a Scanner takes what the driver gives
	}
	switch n := v.(type) {
	case int64:
		return strconv.AppendInt(nil, n, 10)
	case float64:
		if !math.IsInf(n, 0) && !math.IsNaN(n) {
			return strconv.AppendFloat(nil, n, 'g', -1, 64)
		}
	}
	return v
}

// Existing returns which of the keys exist in the table.
func Existing(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) (map[string]bool, error) {
	return ExistingWhere(ctx, db, t, keys, nil)
}

// ExistingWhere returns which of the keys exist in the table and meet
// cond (nil: every row), a condition on the table's columns qualified by
// its SQL name.
func ExistingWhere(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, cond schema.QueryAppender) (map[string]bool, error) {
	found := make(map[string]bool, len(keys))
	if cond == nil {
		cond = bun.Safe("1 = 1")
	}
	if t.KeyKind == protocol.KeyInt {
		// Runs of nearly consecutive integer keys are probed by range
		// (a short statement, whatever the run's length) instead of IN
		// lists; rows in a run's gaps are read and left out.
		runs, rest := intRuns(keys)
		if len(runs) > 0 {
			asked := make(map[string]bool, len(keys)-len(rest))
			for _, k := range keys {
				asked[k] = true
			}
			q := fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE %s BETWEEN ? AND ? AND (?)", t.PK.Field().SQLName, t.Schema().SQLName, t.PK.Field().SQLName)
			for _, r := range runs {
				if err := probe(ctx, db, t, found, asked, q, r[0], r[1], cond); err != nil {
					return nil, err
				}
			}
			keys = rest
		}
	}
	for start := 0; start < len(keys); start += Batch {
		args, err := KeyArgs(t, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return nil, err
		}
		q := fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE %s IN (?) AND (?)", t.PK.Field().SQLName, t.Schema().SQLName, t.PK.Field().SQLName)
		if err := probe(ctx, db, t, found, nil, q, bun.List(args), cond); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// ExistingAsAsked is ExistingWhere answering as the database compares
// keys: it returns which of the keys name a row that meets cond, as a
// statement naming the key (pk = 'ABC') finds it, by the keys as asked.
// For integer and UUID keys that is ExistingWhere. A text key's type or
// collation may take two spellings for one row (SQLite's NOCASE, a
// nondeterministic ICU collation or citext on PostgreSQL: "ABC" names
// the row "abc"), which ExistingWhere, reading the rows' own spelling
// back, does not report for the other. A check that must find every row
// a statement on the keys touches (a push's scope) uses this one. Rows
// are read a batch of keys at a time; only a batch whose rows are not
// all spelled as asked is probed again, a key at a time.
func ExistingAsAsked(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, cond schema.QueryAppender) (map[string]bool, error) {
	if t.KeyKind != protocol.KeyText {
		return ExistingWhere(ctx, db, t, keys, cond)
	}
	held, err := heldAs(ctx, db, t, keys, cond)
	if err != nil {
		return nil, err
	}
	found := make(map[string]bool, len(held))
	for k := range held {
		found[k] = true
	}
	return found, nil
}

// HeldSpellings returns, for keys of t (a table with text keys), the key
// of the row t holds under another spelling of each, as the database
// compares keys: under a collation that ignores case (SQLite's NOCASE,
// citext or a nondeterministic ICU collation on PostgreSQL) the key
// "ABC" names the row "abc", held as "abc". A key that names no row, or
// names it as spelled, is absent.
func HeldSpellings(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) (map[string]string, error) {
	out := map[string]string{}
	if t.KeyKind != protocol.KeyText {
		return out, nil
	}
	held, err := heldAs(ctx, db, t, keys, nil)
	if err != nil {
		return nil, err
	}
	for k, h := range held {
		if h != k {
			out[k] = h
		}
	}
	return out, nil
}

// heldAs returns, for the keys of t (text keys) that name a row meeting
// cond (nil: any) as a statement naming the key finds it, the key as the
// row holds it. Rows are read a batch of keys at a time; only a batch
// whose rows are not all spelled as asked is probed again, a key at a
// time.
func heldAs(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, cond schema.QueryAppender) (map[string]string, error) {
	if cond == nil {
		cond = bun.Safe("1 = 1")
	}
	out := make(map[string]string, len(keys))
	name, pk := t.Schema().SQLName, t.PK.Field().SQLName
	for part := range slices.Chunk(keys, Batch) {
		asked := make(map[string]bool, len(part))
		for _, k := range part {
			asked[k] = true
		}
		args, err := KeyArgs(t, part)
		if err != nil {
			return nil, err
		}
		spelled := map[string]bool{}
		q := fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE %s IN (?) AND (?)", pk, name, pk)
		if err := probe(ctx, db, t, spelled, nil, q, bun.List(args), cond); err != nil {
			return nil, err
		}
		other := false
		for k := range spelled {
			if asked[k] {
				out[k] = k
			} else {
				other = true
			}
		}
		if !other {
			continue
		}
		q = fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE %s = ? AND (?)", pk, name, pk)
		for i, k := range part {
			if _, ok := out[k]; ok {
				continue
			}
			var held []string
			if err := db.NewRaw(q, args[i], cond).Scan(ctx, &held); err != nil {
				return nil, fmt.Errorf("probe %s: %w", t.Name, err)
			}
			if len(held) > 0 {
				out[k] = held[0]
			}
		}
	}
	return out, nil
}

// probe runs q, which selects keys as text, and records those in asked
// (nil: every one) in found.
func probe(ctx context.Context, db bun.IDB, t *dbsync.Table, found, asked map[string]bool, q string, args ...any) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("probe %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return fmt.Errorf("probe %s: %w", t.Name, err)
		}
		if asked == nil || asked[k] {
			found[k] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("probe %s: %w", t.Name, err)
	}
	return nil
}

// minRun is the fewest keys intRuns probes by range.
const minRun = 64

// intRuns splits integer keys into runs of at least minRun and at most
// 4*Batch keys, each spanning at most twice as many integers as it has
// keys, so that a range probe reads little more than the keys asked; it
// returns the runs (first and last key) and the keys left out of them:
// those in short runs, and keys not written as their integer's canonical
// text (CAST(key AS TEXT) would not give them back).
func intRuns(keys []string) (runs [][2]int64, rest []string) {
	if len(keys) < minRun {
		return nil, keys
	}
	ints := make([]int64, 0, len(keys))
	for _, k := range keys {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil || strconv.FormatInt(n, 10) != k {
			rest = append(rest, k)
			continue
		}
		ints = append(ints, n)
	}
	slices.Sort(ints)
	ints = slices.Compact(ints)
	for start := 0; start < len(ints); {
		// Extend the run while it stays dense: its span at most twice
		// its keys (a gap of a key's width is allowed).
		end := start + 1
		for end < len(ints) && end-start < 4*Batch && dense(ints[start], ints[end], end-start+1) {
			end++
		}
		if end-start >= minRun {
			runs = append(runs, [2]int64{ints[start], ints[end-1]})
		} else {
			for _, n := range ints[start:end] {
				rest = append(rest, strconv.FormatInt(n, 10))
			}
		}
		start = end
	}
	return runs, rest
}

// dense reports whether the integers lo to hi span at most twice n.
func dense(lo, hi int64, n int) bool {
	d := hi - lo // negative when it overflows
	return d >= 0 && d < 2*int64(n)
}

// Scan streams every row of a table in primary key order, page rows at a
// time (keyset pagination, so the cost is linear), calling fn with each
// page (struct values). Run it in a transaction for a consistent snapshot.
func Scan(ctx context.Context, db bun.IDB, t *dbsync.Table, page int, fn func(rows []reflect.Value) error) error {
	return ScanWhere(ctx, db, t, page, nil, fn)
}

// ScanWhere is Scan of the rows that meet cond (nil: every row), a
// condition on the table's columns qualified by its bun alias
// (t.Schema().SQLAlias).
func ScanWhere(ctx context.Context, db bun.IDB, t *dbsync.Table, page int, cond schema.QueryAppender, fn func(rows []reflect.Value) error) error {
	var rows []reflect.Value
	return ScanPages(ctx, db, t, cond, func() int { return page }, func(strct reflect.Value) (bool, error) {
		rows = append(rows, strct)
		return true, nil
	}, func() error {
		err := fn(rows)
		rows = nil
		return err
	})
}

// ScanPages streams the rows of t that meet cond (nil: every row; as
// ScanWhere's) in primary key order, a page at a time (keyset pagination,
// so the cost is linear), a row at a time: size gives the number of rows
// of each page (at least 1), row is handed each row (a struct value) as
// it is read, while the page's query holds the connection (row must not
// query db), and returns false to end the page after it; done is called
// after each page that had rows, its query closed. The next page starts
// after the last row handed over: a caller bounding pages in bytes reads
// no row twice. (On PostgreSQL, the rest of a page ended early is still
// sent, and skipped by the driver.)
func ScanPages(ctx context.Context, db bun.IDB, t *dbsync.Table, cond schema.QueryAppender, size func() int, row func(strct reflect.Value) (bool, error), done func() error) error {
	var after any
	pk := bun.Ident(t.PK.Name)
	for {
		n := max(1, size())
		q := db.NewSelect().TableExpr("? AS ?", t.Schema().SQLName, t.Schema().SQLAlias).
			ColumnExpr(selectList(t)).OrderExpr("? ASC", pk).Limit(int64(n))
		if cond != nil {
			q = q.Where("?", cond)
		}
		if after != nil {
			q = q.Where("? > ?", pk, after)
		}
		got, more := 0, true
		err := scanRows(ctx, db, t, q.String(), nil, func(strct reflect.Value) error {
			got++
			after, _ = t.ParseKey(t.Codec().KeyOf(strct))
			var err error
			if more, err = row(strct); err != nil {
				return err
			}
			if !more {
				return errPageEnd
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageEnd) {
			return fmt.Errorf("scan %s: %w", t.Name, err)
		}
		if got == 0 {
			return nil
		}
		if err := done(); err != nil {
			return err
		}
		if more && got < n {
			return nil
		}
	}
}

// errPageEnd ends a page of ScanPages early.
var errPageEnd = errors.New("store: page ended")

// Write inserts rows (struct values). With upsert, a row whose key exists
// replaces it (INSERT … ON CONFLICT (pk) DO UPDATE); without, a duplicate
// key is an error. Every column is written as it is in the struct: unlike
// bun's insert, a zero value is never replaced by the column default.
func Write(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value, upsert bool) error {
	mode := insertOnly
	if upsert {
		mode = insertOrUpdate
	}
	_, err := write(ctx, db, t, rows, mode)
	return err
}

// CountRows returns how many rows of t hold one of keys (distinct text),
// as the database compares keys: under a key column's collation that
// ignores case, "Abc" and "aBC" name one row.
func CountRows(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) (int, error) {
	q := "SELECT COUNT(*) FROM " + string(t.Schema().SQLName) + " WHERE " + string(t.PK.Field().SQLName) + " IN (?)"
	n := 0
	for start := 0; start < len(keys); start += Batch {
		args := make([]any, 0, min(Batch, len(keys)-start))
		for _, k := range keys[start:min(start+Batch, len(keys))] {
			arg, err := t.ParseKey(k)
			if err != nil {
				return 0, err
			}
			args = append(args, arg)
		}
		var k int
		if err := db.NewRaw(q, bun.List(args)).Scan(ctx, &k); err != nil {
			return 0, fmt.Errorf("store: count the rows of %s: %w", t.Name, err)
		}
		n += k
	}
	return n, nil
}

// WriteNew inserts the rows whose key the table does not hold (INSERT …
// ON CONFLICT (pk) DO NOTHING) and reports the keys it inserted: a row
// whose key the table held, or an earlier row of rows took, is left out.
func WriteNew(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value) (inserted map[string]bool, err error) {
	inserted, err = write(ctx, db, t, rows, insertNew)
	if inserted == nil && err == nil {
		inserted = map[string]bool{}
	}
	return inserted, err
}

// WriteReporting writes rows like Write with upsert, and reports which keys
// were new (inserted) rather than replaced: the rows are inserted with ON
// CONFLICT DO NOTHING RETURNING their key, then those that existed are
// updated.
func WriteReporting(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value) (inserted map[string]bool, err error) {
	inserted, err = write(ctx, db, t, rows, insertNew)
	if err != nil {
		return nil, err
	}
	var rest []reflect.Value
	for _, strct := range rows {
		if !inserted[t.Codec().KeyOf(strct)] {
			rest = append(rest, strct)
		}
	}
	_, err = write(ctx, db, t, rest, insertOrUpdate)
	return inserted, err
}

type writeMode int

const (
	insertOnly writeMode = iota
	insertOrUpdate
	insertNew // ON CONFLICT DO NOTHING RETURNING the key
)

func write(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value, mode writeMode) (map[string]bool, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	head, tail := insertSQL(t, mode)
	var inserted map[string]bool
	if mode == insertNew {
		inserted = make(map[string]bool, len(rows))
	}
	if err := writeLiterals(ctx, db, t, rows, head, tail, inserted); err != nil {
		return nil, err
	}
	return inserted, nil
}

// writeLiterals writes rows Batch per multi-row literal INSERT, head and
// tail around the VALUES tuples; when inserted is not nil, the statement
// returns the keys it inserts, which are recorded there.
func writeLiterals(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value, head, tail string, inserted map[string]bool) error {
	gen := schema.NewQueryGen(db.Dialect())
	var b []byte
	for start := 0; start < len(rows); start += Batch {
		b = append(b[:0], head...)
		for i, strct := range rows[start:min(start+Batch, len(rows))] {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, '(')
			for j, c := range t.Columns {
				if j > 0 {
					b = append(b, ", "...)
				}
				b = AppendLiteral(gen, b, c.Field(), strct)
			}
			b = append(b, ')')
		}
		b = append(b, tail...)
		if inserted == nil {
			if _, err := db.ExecContext(ctx, string(b)); err != nil {
				return fmt.Errorf("write %s: %w", t.Name, err)
			}
			continue
		}
		res, err := db.QueryContext(ctx, string(b))
		if err == nil {
			err = collectKeys(res, inserted)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", t.Name, err)
		}
	}
	return nil
}

// AppendLiteral appends the SQL literal of field f's value in strct. A
// primary key's value is written as it is, its zero value too: bun writes
// NULL for the zero value of a nullzero field, which autoincrement keys
// are, and the database would pick another key for the row (or refuse
// it). Any other field is written as AppendValue writes it.
func AppendLiteral(gen schema.QueryGen, b []byte, f *schema.Field, strct reflect.Value) []byte {
	if f.IsPK {
		if fv := f.Value(strct); !f.IsPtr || !fv.IsNil() {
			return f.Append(gen, b, fv)
		}
	}
	return AppendValue(gen, b, f, strct)
}

// AppendValue appends the SQL literal of field f's value in strct as bun
// writes it (NULL for a nil pointer and for the zero value of a nullzero
// field), but a float's negative zero as the database keeps it
// (dialect.NegativeZero): bun writes -0, which the database reads as the
// integer 0, and the row would read back 0 where its sender reads -0. On
// SQLite, another float64 is written as an expression that evaluates to
// exactly its value (dialect.AppendExactReal): SQLite reads some of bun's
// literals (large exponents) as a neighbouring value.
func AppendValue(gen schema.QueryGen, b []byte, f *schema.Field, strct reflect.Value) []byte {
	start := len(b)
	b = f.AppendValue(gen, b, strct)
	if string(b[start:]) == "-0" { // no other value's literal (an integer's is 0)
		if kind, err := dialect.OfDialect(gen.Dialect()); err == nil {
			b = append(b[:start], dialect.NegativeZero(kind)...)
		}
		return b
	}
	switch f.IndirectType.Kind() {
	case reflect.Float32, reflect.Float64, reflect.Struct: // a float, or a null type that may hold one
	default:
		return b
	}
	// A float32's literal (its shortest decimal, of at most 9 digits and
	// exponents within ±45) SQLite reads exactly as bun's own writes
	// store it: the double nearest the decimal, not the float32's double
	// (0.1, not 0.10000000149011612), which a later write of the same
	// value by the application would take for a change.
	if x, bits, ok := floatOf(f.Value(strct)); ok && bits == 64 && x != 0 && !math.IsInf(x, 0) && !math.IsNaN(x) {
		if kind, err := dialect.OfDialect(gen.Dialect()); err == nil && kind == dialect.SQLite {
			// The literal stays where SQLite reads it exactly (nearly
			// every value: SQLite's reading goes wrong at large
			// exponents), as cheap to write and to parse as before; else
			// the exact expression, only where bun wrote that float (not
			// through a Valuer).
			if v, ok := dialect.SQLiteReads(b[start:]); !ok || v != x {
				if p, err := strconv.ParseFloat(string(b[start:]), bits); err == nil && p == x {
					b = dialect.AppendExactReal(b[:start], x)
				}
			}
		}
	}
	return b
}

// floatOf returns the value of v if bun writes it as a float: a float
// (through pointers) of a type that does not write itself, or the value
// of a valid database/sql null type holding one; bits is its size.
func floatOf(v reflect.Value) (x float64, bits int, ok bool) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, 0, false
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct && v.Type().PkgPath() == "database/sql" && v.NumField() == 2 &&
		v.Field(1).Kind() == reflect.Bool {
		if !v.Field(1).Bool() {
			return 0, 0, false
		}
		v = v.Field(0)
	} else if writesItself(v.Type()) {
		return 0, 0, false
	}
	if k := v.Kind(); k != reflect.Float32 && k != reflect.Float64 {
		return 0, 0, false
	}
	return v.Float(), v.Type().Bits(), true
}

// collectKeys records the keys res returns in inserted and closes res.
func collectKeys(res *sql.Rows, inserted map[string]bool) error {
	defer res.Close()
	for res.Next() {
		var k string
		if err := res.Scan(&k); err != nil {
			return err
		}
		inserted[k] = true
	}
	return res.Err()
}

// insertSQL returns the INSERT statement of mode for t's columns in table
// order, around its VALUES tuples: head ends with "VALUES ", tail is the
// ON CONFLICT clause (empty for insertOnly).
func insertSQL(t *dbsync.Table, mode writeMode) (head, tail string) {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(string(t.Schema().SQLName))
	b.WriteString(" (")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(c.Field().SQLName))
	}
	b.WriteString(") VALUES ")
	pk := t.PK.Field().SQLName
	switch mode {
	case insertOrUpdate:
		var set strings.Builder
		for _, c := range t.Columns {
			if c == t.PK {
				continue
			}
			if set.Len() > 0 {
				set.WriteString(", ")
			}
			fmt.Fprintf(&set, "%s = EXCLUDED.%s", c.Field().SQLName, c.Field().SQLName)
		}
		if set.Len() == 0 {
			tail = fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", pk)
		} else {
			tail = fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", pk, set.String())
		}
	case insertNew:
		tail = fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING RETURNING CAST(%s AS TEXT)", pk, pk)
	}
	return b.String(), tail
}

// Update sets the columns of t other than its key, as they are in rows
// (struct values), in the rows with the same keys; keys no row has are
// left out. t is normally a projection of a tracked table on a few
// columns (dbsync.Registry.Project): the others are left as they are.
func Update(ctx context.Context, db bun.IDB, t *dbsync.Table, rows []reflect.Value) error {
	if len(t.Columns) < 2 {
		return nil
	}
	gen := schema.NewQueryGen(db.Dialect())
	var b []byte
	for _, strct := range rows {
		b = append(b[:0], "UPDATE "...)
		b = append(b, t.Schema().SQLName...)
		b = append(b, " SET "...)
		first := true
		for _, c := range t.Columns {
			if c == t.PK {
				continue
			}
			if !first {
				b = append(b, ", "...)
			}
			first = false
			b = append(b, c.Field().SQLName...)
			b = append(b, " = "...)
			b = AppendValue(gen, b, c.Field(), strct)
		}
		b = append(b, " WHERE "...)
		b = append(b, t.PK.Field().SQLName...)
		b = append(b, " = "...)
		b = AppendLiteral(gen, b, t.PK.Field(), strct)
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			return fmt.Errorf("update %s: %w", t.Name, err)
		}
	}
	return nil
}

// Delete deletes the rows with the given keys.
func Delete(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string) error {
	for start := 0; start < len(keys); start += Batch {
		args, err := KeyArgs(t, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return err
		}
		q := fmt.Sprintf("DELETE FROM %s WHERE %s IN (?)", t.Schema().SQLName, t.PK.Field().SQLName)
		if _, err := db.ExecContext(ctx, q, bun.List(args)); err != nil {
			return fmt.Errorf("delete from %s: %w", t.Name, err)
		}
	}
	return nil
}

// DeleteAll empties a table.
func DeleteAll(ctx context.Context, db bun.IDB, t *dbsync.Table) error {
	if _, err := db.ExecContext(ctx, "DELETE FROM "+string(t.Schema().SQLName)); err != nil {
		return fmt.Errorf("empty %s: %w", t.Name, err)
	}
	return nil
}

// UniqueHolders finds, for each row (struct value), the key of a stored row
// whose columns cols hold the same values; rows with a NULL among those
// columns are skipped (NULLs never collide). The result maps row indexes to
// holder keys; a row may be its own holder.
func UniqueHolders(ctx context.Context, db bun.IDB, t *dbsync.Table, cols []string, rows []reflect.Value) (map[int]string, error) {
	fields := make([]*dbsync.Column, len(cols))
	for i, c := range cols {
		if fields[i] = t.Column(c); fields[i] == nil {
			return nil, fmt.Errorf("unique check of %s: no column %s", t.Name, c)
		}
	}
	gen := schema.NewQueryGen(db.Dialect())
	want := map[string][]int{} // tuple JSON → row indexes
	var tuples []string
	for i, strct := range rows {
		tuple, ok, err := t.Codec().TupleKey(strct, cols)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if _, seen := want[tuple]; !seen {
			var lit []byte
			if len(cols) > 1 {
				lit = append(lit, '(')
			}
			for j, f := range fields {
				if j > 0 {
					lit = append(lit, ", "...)
				}
				lit = AppendLiteral(gen, lit, f.Field(), strct)
			}
			if len(cols) > 1 {
				lit = append(lit, ')')
			}
			tuples = append(tuples, string(lit))
		}
		want[tuple] = append(want[tuple], i)
	}
	out := map[int]string{}
	var lhs strings.Builder
	if len(cols) > 1 {
		lhs.WriteByte('(')
	}
	for j, f := range fields {
		if j > 0 {
			lhs.WriteString(", ")
		}
		lhs.WriteString(string(f.Field().SQLName))
	}
	if len(cols) > 1 {
		lhs.WriteByte(')')
	}
	for start := 0; start < len(tuples); start += Batch {
		in := strings.Join(tuples[start:min(start+Batch, len(tuples))], ", ")
		slice := newSlice(t)
		if err := db.NewSelect().Model(slice.Interface()).
			Where(lhs.String()+" IN (?)", bun.Safe(in)).
			Scan(ctx); err != nil {
			return nil, fmt.Errorf("unique check of %s: %w", t.Name, err)
		}
		s := slice.Elem()
		for i := range s.Len() {
			found := s.Index(i).Elem()
			tuple, ok, err := t.Codec().TupleKey(found, cols)
			if err != nil || !ok {
				continue
			}
			for _, idx := range want[tuple] {
				out[idx] = t.Codec().KeyOf(found)
			}
		}
	}
	return out, nil
}

// Reference is a row of a child table referencing a parent key.
type Reference struct {
	Child, Parent string
}

// Referencing returns the rows of child whose column col references one of
// the parent keys.
func Referencing(ctx context.Context, db bun.IDB, child *dbsync.Table, col string, parent *dbsync.Table, keys []string) ([]Reference, error) {
	c := child.Column(col)
	if c == nil {
		return nil, fmt.Errorf("references to %s: no column %s.%s", parent.Name, child.Name, col)
	}
	var out []Reference
	for start := 0; start < len(keys); start += Batch {
		args, err := KeyArgs(parent, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return nil, err
		}
		q := fmt.Sprintf("SELECT CAST(%s AS TEXT), CAST(%s AS TEXT) FROM %s WHERE %s IN (?)",
			child.PK.Field().SQLName, c.Field().SQLName, child.Schema().SQLName, c.Field().SQLName)
		rows, err := db.QueryContext(ctx, q, bun.List(args))
		if err != nil {
			return nil, fmt.Errorf("references to %s: %w", parent.Name, err)
		}
		for rows.Next() {
			var r Reference
			if err := rows.Scan(&r.Child, &r.Parent); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// KeysWhere returns the keys of the rows of the table that meet cond, a
// condition on its columns qualified by its SQL name.
func KeysWhere(ctx context.Context, db bun.IDB, t *dbsync.Table, cond schema.QueryAppender) (map[string]bool, error) {
	q := fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE ?", t.PK.Field().SQLName, t.Schema().SQLName)
	rows, err := db.QueryContext(ctx, q, cond)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", t.Name, err)
	}
	defer rows.Close()
	found := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("keys of %s: %w", t.Name, err)
		}
		found[k] = true
	}
	return found, rows.Err()
}

// KeyPages streams the keys of the rows of t that meet cond (nil: every
// row; a condition on its columns qualified by its SQL name) in primary
// key order, page keys at a time (keyset pagination, so the cost is
// linear), calling fn with each page that had keys, its query closed (fn
// may query db).
func KeyPages(ctx context.Context, db bun.IDB, t *dbsync.Table, page int, cond schema.QueryAppender, fn func(keys []string) error) error {
	page = max(1, page)
	// Qualified: PostgreSQL would order by the output column (the key's
	// text) were it named as the key column.
	pk := string(t.Schema().SQLName) + "." + string(t.PK.Field().SQLName)
	var after any
	for {
		q := fmt.Sprintf("SELECT CAST(%s AS TEXT) AS dbsync_key FROM %s WHERE ?", pk, t.Schema().SQLName)
		args := []any{bun.Safe("1 = 1")}
		if cond != nil {
			args[0] = cond
		}
		if after != nil {
			q += fmt.Sprintf(" AND %s > ?", pk)
			args = append(args, after)
		}
		q += fmt.Sprintf(" ORDER BY %s ASC LIMIT %d", pk, page)
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("keys of %s: %w", t.Name, err)
		}
		var keys []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return fmt.Errorf("keys of %s: %w", t.Name, err)
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("keys of %s: %w", t.Name, err)
		}
		if len(keys) == 0 {
			return nil
		}
		n, last := len(keys), keys[len(keys)-1] // fn may change keys
		if err := fn(keys); err != nil {
			return err
		}
		if n < page {
			return nil
		}
		if after, err = t.ParseKey(last); err != nil {
			return fmt.Errorf("keys of %s: %w", t.Name, err)
		}
	}
}

// KeyEqualities reads how the database compares the keys of each
// text-keyed table of reg (dialect.KeyEquality): by table, those it does
// not compare byte for byte ("ABC" names the row "abc" under NOCASE).
func KeyEqualities(ctx context.Context, db bun.IDB, reg *dbsync.Registry) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range reg.Tables() {
		if t.KeyKind != protocol.KeyText {
			continue
		}
		eq, err := dialect.KeyEquality(ctx, db, t.Name, t.PK.Name)
		if err != nil {
			return nil, err
		}
		if eq != "" {
			out[t.Name] = eq
		}
	}
	return out, nil
}
