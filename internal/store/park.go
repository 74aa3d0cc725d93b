package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// parkMark starts the text placeholders of parked rows.
const parkMark = "\x01dbsync-parked:"

// Park moves rows out of the way of unique values, in place, so that a
// swap (rows exchanging unique values) can be written by key without
// deleting anything: both SQLite and PostgreSQL check a unique constraint
// row by row, so a row cannot take a value another row still holds, even
// in one statement.
//
// In each row of t with one of the keys, one column of each unique
// constraint of t takes a placeholder that no other row holds and that
// none of writes (the struct values about to be written) carries, which
// makes the row's whole tuple unique. The column is chosen in this order:
// a nullable one (NULL, unless a PostgreSQL NULLS NOT DISTINCT index
// covers it), then one with a value placeholder that references nothing,
// then a referencing one (its check must be deferred). Placeholders: for
// a number, values above the largest the column and writes hold (so that
// a CHECK (x >= 0) holds; below the smallest when there is no room above;
// random free values inside the range of the column's type when there is
// room at neither end); for text and bytes, a marked random value (unguessable, so no row pushed
// before can hold it); for a UUID, a fresh random one. Rows that
// reference the parked rows are never touched, whatever their ON DELETE
// actions. The caller rewrites or deletes every parked row before its
// transaction commits; a constraint none of whose columns has a
// placeholder (all NOT NULL times, say) is an error.
func Park(ctx context.Context, db bun.IDB, t *dbsync.Table, keys []string, writes []reflect.Value) error {
	if len(keys) == 0 || len(t.Uniques) == 0 {
		return nil
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	info, err := dialect.Columns(ctx, db, t.Name)
	if err != nil {
		return err
	}
	cols, err := parkColumns(t, info)
	if err != nil {
		return err
	}
	gen := schema.NewQueryGen(db.Dialect())
	// vals[i][j] is the SQL literal of column j in the row keys[i].
	vals := make([][]string, len(keys))
	for i := range vals {
		vals[i] = make([]string, len(cols))
	}
	for j, c := range cols {
		lits, err := placeholders(ctx, db, gen, t, c, info[c.Name], keys, writes)
		if err != nil {
			return err
		}
		for i, lit := range lits {
			vals[i][j] = lit
		}
	}
	args, err := KeyArgs(t, keys)
	if err != nil {
		return err
	}
	var b []byte
	for i := range keys {
		b = append(b[:0], "UPDATE "...)
		b = append(b, t.Schema().SQLName...)
		b = append(b, " SET "...)
		for j, c := range cols {
			if j > 0 {
				b = append(b, ", "...)
			}
			b = append(b, c.Field().SQLName...)
			b = append(b, " = "...)
			b = append(b, vals[i][j]...)
		}
		b = append(b, " WHERE "...)
		b = append(b, t.PK.Field().SQLName...)
		b = append(b, " = "...)
		b = gen.AppendQuery(b, "?", args[i])
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			return fmt.Errorf("move %s %s out of the way of a unique value: %w", t.Name, keys[i], err)
		}
	}
	return nil
}

// Placeholder kinds, best first: NULL, a value of the column's type, a
// value of a referencing column (it references nothing until the row is
// rewritten, which only a deferred check allows).
const (
	parkNull = iota
	parkValue
	parkReference
	parkNone
)

// parkColumns chooses, for each unique constraint of t, the one column
// that takes a placeholder (a placeholder no other row holds makes the
// whole tuple unique), in table order. A constraint sharing a column
// already chosen needs no other.
func parkColumns(t *dbsync.Table, info map[string]dialect.ColumnInfo) ([]*dbsync.Column, error) {
	refs := map[string]bool{}
	for _, fk := range t.ForeignKeys {
		refs[fk.Column] = true
	}
	kind := func(c *dbsync.Column) int {
		ci := info[c.Name]
		switch {
		case !ci.NotNull && !ci.NullsNotDistinct:
			return parkNull
		case placeholderType(c.Field()) == "":
			return parkNone
		case refs[c.Name]:
			return parkReference
		}
		return parkValue
	}
	chosen := map[string]bool{}
	for _, u := range t.Uniques {
		if slices.ContainsFunc(u, func(name string) bool { return chosen[name] }) {
			continue
		}
		best, bestKind := "", parkNone
		for _, name := range u {
			if k := kind(t.Column(name)); k < bestKind {
				best, bestKind = name, k
			}
		}
		if best == "" {
			return nil, fmt.Errorf("store: cannot move rows of %s out of the way of a unique value: no column of (%s) can take a placeholder", t.Name, strings.Join(u, ", "))
		}
		chosen[best] = true
	}
	var out []*dbsync.Column
	for _, c := range t.Columns {
		if chosen[c.Name] {
			out = append(out, c)
		}
	}
	return out, nil
}

// placeholderType names the placeholder a NOT NULL column of f's type
// takes, or is empty when there is none.
func placeholderType(f *schema.Field) string {
	typ := f.IndirectType
	switch {
	case typ == reflect.TypeOf(uuid.UUID{}):
		return "uuid"
	case typ.Kind() == reflect.String && isUUIDType(f):
		return "uuid text"
	case typ.Kind() == reflect.String:
		return "text"
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8:
		return "bytes"
	case isNumber(typ.Kind()):
		return "number"
	}
	return ""
}

// placeholders returns the SQL literals column c takes in the parked rows
// keys.
func placeholders(ctx context.Context, db bun.IDB, gen schema.QueryGen, t *dbsync.Table, c *dbsync.Column, info dialect.ColumnInfo, keys []string, writes []reflect.Value) ([]string, error) {
	out := make([]string, len(keys))
	if !info.NotNull && !info.NullsNotDistinct {
		for i := range out {
			out[i] = "NULL"
		}
		return out, nil
	}
	f := c.Field()
	typ := f.IndirectType
	var values []reflect.Value
	switch placeholderType(f) {
	case "uuid":
		for range keys {
			values = append(values, reflect.ValueOf(uuid.New()))
		}
	case "uuid text":
		for range keys {
			values = append(values, reflect.ValueOf(uuid.NewString()).Convert(typ))
		}
	case "text":
		for range keys {
			s, err := markedText(t, c, info.MaxLength)
			if err != nil {
				return nil, err
			}
			values = append(values, reflect.ValueOf(s).Convert(typ))
		}
	case "bytes":
		for range keys {
			values = append(values, reflect.ValueOf([]byte(parkMark+rand.Text())).Convert(typ))
		}
	case "number":
		nums, err := numbers(ctx, db, t, c, info, len(keys), writes)
		if err != nil {
			return nil, err
		}
		values = nums
	default:
		return nil, fmt.Errorf("store: cannot move %s.%s (%s, NOT NULL) out of the way of a unique value: no placeholder for the type", t.Name, c.Name, typ)
	}
	for i, v := range values {
		strct := t.Codec().NewModel().Elem()
		fv := f.Value(strct)
		if f.IsPtr {
			p := reflect.New(typ)
			p.Elem().Set(v)
			v = p
		}
		fv.Set(v)
		out[i] = string(f.AppendValue(gen, nil, strct))
	}
	return out, nil
}

func isUUIDType(f *schema.Field) bool {
	for _, s := range []string{f.UserSQLType, f.CreateTableSQLType, f.DiscoveredSQLType} {
		if strings.EqualFold(s, "uuid") {
			return true
		}
	}
	return false
}

// markedText is a text placeholder: the mark and a random token (26
// characters, 130 bits), or the mark's first byte and as much of the token
// as the column holds. The token is random, not derived from the row, so
// that no row pushed beforehand can hold the value a parked row takes.
func markedText(t *dbsync.Table, c *dbsync.Column, maxLen int) (string, error) {
	token := rand.Text()
	s := parkMark + token
	if maxLen == 0 || len(s) <= maxLen {
		return s, nil
	}
	if maxLen-1 < 16 {
		return "", fmt.Errorf("store: cannot move %s.%s (at most %d characters) out of the way of a unique value: too short for a placeholder", t.Name, c.Name, maxLen)
	}
	return parkMark[:1] + token[:maxLen-1], nil
}

func isNumber(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// numbers returns n distinct values of c's type outside the range of the
// values the column and writes hold; for a signed integer with no room at
// either end (rows hold values near both limits of the column's type,
// the narrower of the Go type and the database's), free values inside.
func numbers(ctx context.Context, db bun.IDB, t *dbsync.Table, c *dbsync.Column, info dialect.ColumnInfo, n int, writes []reflect.Value) ([]reflect.Value, error) {
	f := c.Field()
	typ := f.IndirectType
	// Integers are read as text (a driver may scan a large unsigned one
	// badly), floats as floats (SQLite's text of a REAL keeps only 15
	// digits).
	var lo, hi sql.NullString
	var flo, fhi sql.NullFloat64
	isFloat := typ.Kind() == reflect.Float32 || typ.Kind() == reflect.Float64
	q := fmt.Sprintf("SELECT CAST(MIN(%s) AS TEXT), CAST(MAX(%s) AS TEXT) FROM %s", f.SQLName, f.SQLName, t.Schema().SQLName)
	dest := []any{&lo, &hi}
	if isFloat {
		q = fmt.Sprintf("SELECT MIN(%s), MAX(%s) FROM %s", f.SQLName, f.SQLName, t.Schema().SQLName)
		dest = []any{&flo, &fhi}
	}
	if err := db.QueryRowContext(ctx, q).Scan(dest...); err != nil {
		return nil, fmt.Errorf("range of %s.%s: %w", t.Name, c.Name, err)
	}
	bounds := []sql.NullString{lo, hi}
	// A referencing column's placeholder must reference nothing, also
	// while the row waits for its rewrite (a peer's apply over several
	// pages): outside the referenced keys too, or deleting the row it
	// happened to point at would cascade to the parked row.
	if !isFloat && slices.ContainsFunc(t.ForeignKeys, func(fk protocol.ForeignKey) bool { return fk.Column == c.Name }) {
		fks, err := dialect.ForeignKeys(ctx, db, []string{t.Name})
		if err != nil {
			return nil, err
		}
		for _, fk := range fks {
			if fk.Column != c.Name {
				continue
			}
			var rlo, rhi sql.NullString
			q := fmt.Sprintf("SELECT CAST(MIN(%s) AS TEXT), CAST(MAX(%s) AS TEXT) FROM %s",
				dialect.QuoteIdent(fk.RefColumn), dialect.QuoteIdent(fk.RefColumn), dialect.QuoteIdent(fk.RefTable))
			if err := db.QueryRowContext(ctx, q).Scan(&rlo, &rhi); err != nil {
				return nil, fmt.Errorf("range of %s.%s: %w", fk.RefTable, fk.RefColumn, err)
			}
			bounds = append(bounds, rlo, rhi)
		}
	}
	var held []reflect.Value
	for _, strct := range writes {
		v := f.Value(strct)
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				continue
			}
			v = v.Elem()
		}
		held = append(held, v)
	}
	out := make([]reflect.Value, n)
	fail := fmt.Errorf("store: cannot move %s.%s out of the way of a unique value: no room for %d placeholders outside its values", t.Name, c.Name, n)
	switch typ.Kind() {
	case reflect.Float32, reflect.Float64:
		low, high := 0.0, 0.0
		for _, x := range []sql.NullFloat64{flo, fhi} {
			if x.Valid {
				low, high = math.Min(low, x.Float64), math.Max(high, x.Float64)
			}
		}
		for _, v := range held {
			low, high = math.Min(low, v.Float()), math.Max(high, v.Float())
		}
		// Step away by 1, or by one representable value where 1 no longer
		// changes a value (beyond 2^53 for a float64, 2^24 for a float32):
		// above the largest value (a CHECK (x >= 0) holds), or below the
		// smallest when rows hold values near the largest float.
		step := func(x, dir float64) float64 {
			next := x + dir
			if typ.Kind() == reflect.Float32 {
				next = float64(float32(next))
				if next == x {
					next = float64(math.Nextafter32(float32(x), float32(math.Inf(int(dir)))))
				}
			} else if next == x {
				next = math.Nextafter(x, math.Inf(int(dir)))
			}
			return next
		}
		for _, start := range []struct{ x, dir float64 }{{math.Ceil(high), 1}, {math.Floor(low), -1}} {
			x := start.x
			for i := range out {
				if x = step(x, start.dir); math.IsInf(x, 0) {
					break
				}
				out[i] = reflect.ValueOf(x).Convert(typ)
			}
			if !math.IsInf(x, 0) {
				return out, nil
			}
		}
		return nil, fail
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		top := uint64(math.MaxUint64) >> (64 - typ.Bits())
		var low, high uint64 = math.MaxUint64, 0
		for _, s := range bounds {
			if s.Valid {
				x, err := strconv.ParseUint(s.String, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("range of %s.%s: %w", t.Name, c.Name, err)
				}
				low, high = min(low, x), max(high, x)
			}
		}
		for _, v := range held {
			low, high = min(low, v.Uint()), max(high, v.Uint())
		}
		switch {
		case high < top && top-high >= uint64(n):
			for i := range out {
				out[i] = reflect.ValueOf(high + 1 + uint64(i)).Convert(typ)
			}
		case low != math.MaxUint64 && low >= uint64(n):
			for i := range out {
				out[i] = reflect.ValueOf(low - 1 - uint64(i)).Convert(typ)
			}
		default:
			return nil, fail
		}
		return out, nil
	default:
		bits := typ.Bits()
		if info.IntBits > 0 {
			bits = min(bits, info.IntBits)
		}
		bottom := int64(math.MinInt64) >> (64 - bits)
		top := int64(math.MaxInt64) >> (64 - bits)
		var low, high int64
		for _, s := range bounds {
			if s.Valid {
				x, err := strconv.ParseInt(s.String, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("range of %s.%s: %w", t.Name, c.Name, err)
				}
				low, high = min(low, x), max(high, x)
			}
		}
		for _, v := range held {
			low, high = min(low, v.Int()), max(high, v.Int())
		}
		// Above the values first: a CHECK (x >= 0), common on positions
		// and counts, holds for them.
		switch {
		case top-high >= int64(n):
			for i := range out {
				out[i] = reflect.ValueOf(high + 1 + int64(i)).Convert(typ)
			}
		case low >= bottom+int64(n):
			for i := range out {
				out[i] = reflect.ValueOf(low - 1 - int64(i)).Convert(typ)
			}
		default:
			free, err := freeInts(ctx, db, t, c, n, bottom, top, held)
			if err != nil {
				return nil, err
			}
			if free == nil {
				return nil, fail
			}
			for i, x := range free {
				out[i] = reflect.ValueOf(x).Convert(typ)
			}
		}
		return out, nil
	}
}

// freeInts returns n distinct random values of [bottom, top] that no row
// of t holds in c and no value of held is, or nil when a bounded number of
// draws finds none (the column is nearly full).
func freeInts(ctx context.Context, db bun.IDB, t *dbsync.Table, c *dbsync.Column, n int, bottom, top int64, held []reflect.Value) ([]int64, error) {
	taken := make(map[int64]bool, len(held)+n)
	for _, v := range held {
		taken[v.Int()] = true
	}
	q := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s = ?", t.Schema().SQLName, c.Field().SQLName)
	span := uint64(top - bottom) // wraps to 2^64-1 for the whole int64 range
	var out []int64
	for draws := 0; len(out) < n; draws++ {
		if draws >= 64*n {
			return nil, nil
		}
		x := int64(mrand.Uint64())
		if span < math.MaxUint64 {
			x = bottom + int64(mrand.Uint64N(span+1))
		}
		if taken[x] {
			continue
		}
		var count int
		if err := db.QueryRowContext(ctx, q, x).Scan(&count); err != nil {
			return nil, fmt.Errorf("free values of %s.%s: %w", t.Name, c.Name, err)
		}
		taken[x] = true
		if count == 0 {
			out = append(out, x)
		}
	}
	return out, nil
}
