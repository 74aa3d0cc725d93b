package store

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
)

// CheckRow refuses (a *dbsync.ValueError wrapping dbsync.ErrBadRequest) a
// decoded row from outside with a value the databases cannot store and read
// back: see CheckValue.
func CheckRow(t *dbsync.Table, strct reflect.Value) error {
	for _, c := range t.Columns {
		if err := CheckValue(c.Field().Value(strct)); err != nil {
			return &dbsync.ValueError{Table: t.Name, Key: t.Codec().KeyOf(strct), Column: c.Name, Err: fmt.Errorf("%w: %w", dbsync.ErrBadRequest, err)}
		}
	}
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

// CheckValue refuses text with a NUL character (bun will not write it:
// the statement fails), unsigned integers above 2^63-1 (PostgreSQL
// refuses them; SQLite stores them as a rounded REAL, which bun cannot
// read back into the field: every later pull and repair of the table
// would fail), times (time.Time, bun.NullTime) outside years
// 1–9999 in UTC (PostgreSQL refuses them; SQLite stores them in a form
// that can no longer be read, which would break every later pull and
// repair of the table), and JSON that bun cannot write intact (see
// checkJSON).
func CheckValue(v reflect.Value) error {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == timeType:
		if y := v.Interface().(time.Time).UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("time is outside years 1-9999 (UTC year %d)", y)
		}
	case v.Kind() == reflect.Struct && v.NumField() == 1 && v.Type().Field(0).Anonymous && v.Field(0).Type() == timeType:
		// bun.NullTime: a time.Time, written as one.
		return CheckValue(v.Field(0))
	case v.Kind() >= reflect.Uint && v.Kind() <= reflect.Uint64:
		if n := v.Uint(); n > math.MaxInt64 {
			return fmt.Errorf("integer %d is above 2^63-1, the largest the databases' integers hold", n)
		}
	case v.Kind() == reflect.String:
		if strings.IndexByte(v.String(), 0) >= 0 {
			return errors.New("text contains a NUL character")
		}
	case v.Kind() == reflect.Struct && v.Type().PkgPath() == "database/sql" && v.NumField() == 2 &&
		v.Field(1).Kind() == reflect.Bool:
		// sql.NullString, sql.NullTime, sql.Null[T]
		if v.Field(1).Bool() {
			return CheckValue(v.Field(0))
		}
	case v.Type() == rawJSONType:
		return checkJSON(v.Bytes())
	case v.Kind() == reflect.Map ||
		v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 ||
		v.Kind() == reflect.Struct && !writesItself(v.Type()):
		// Written as JSON.
		if raw, err := json.Marshal(v.Interface()); err == nil {
			return checkJSON(raw)
		}
	}
	return nil
}

var rawJSONType = reflect.TypeFor[json.RawMessage]()

var (
	valuerType   = reflect.TypeFor[driver.Valuer]()
	appenderType = reflect.TypeFor[schema.QueryAppender]()
)

// writesItself reports whether bun writes a value of t through its own
// driver.Valuer or schema.QueryAppender: a struct that does not is
// written as JSON.
func writesItself(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(valuerType) || p.Implements(valuerType) || t.Implements(appenderType) || p.Implements(appenderType)
}

// checkJSON refuses JSON holding the text \u0000 (a NUL escape, or an
// escaped backslash followed by u0000): bun rewrites it when it writes JSON
// (schema.BaseDialect.AppendJSON), so the value would be stored altered, or
// refused by PostgreSQL.
func checkJSON(raw []byte) error {
	if bytes.Contains(raw, []byte(`\u0000`)) {
		return errors.New(`JSON contains the text \u0000, which cannot be stored intact`)
	}
	return nil
}
