package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
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
// computes its own), and, on PostgreSQL, a json or jsonb column for a
// field whose values are not JSON text (a *dbsync.ColumnTypeError: see
// jsonTakes). SQLite matches names without regard to case, as it does.
func CheckColumns(ctx context.Context, db bun.IDB, tables []*dbsync.Table) error {
	fold := dialect.MustOf(db) == dialect.SQLite
	var missing, generated []string
	var mistyped []error
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
			case ci.JSONType != "" && !jsonTakes(c):
				mistyped = append(mistyped, &dbsync.ColumnTypeError{Table: t.Name, Column: c.Name,
					GoType: c.Field().StructField.Type.String(), DBType: ci.JSONType, Want: valueSQLType(c)})
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
	return errors.Join(mistyped...)
}

// jsonTakes reports whether a json or jsonb column (PostgreSQL) takes the
// values of column c as bun writes them: those of a JSON column (a map,
// a slice, a struct bun writes as JSON, json.RawMessage), those of a
// type that writes itself (driver.Valuer, json.Marshaler: its values may
// be JSON text; if one is not, the push naming it is refused), a
// string's (the application may keep JSON text in one, on purpose), and
// those of a field tagged type:json or type:jsonb that is no
// driver.Valuer (bun writes it as JSON). Not the others: bun writes a
// number or a boolean as a literal of its own type, which the column
// refuses whatever the value (SQLSTATE 42804), and a time, a UUID or
// bytes as text that is never JSON; nor an sql.Null[string] whose field
// has no type:json or type:jsonb tag, for which jsonb is bun's choice,
// not the application's (an sql.NullString, which bun declares varchar,
// is taken as a string is). Only NULL would be written: no value of the
// field could sync, nor be written by the application.
func jsonTakes(c *dbsync.Column) bool {
	f := c.Field()
	if typ := strings.ToLower(f.UserSQLType); typ == "json" || typ == "jsonb" {
		t := f.StructField.Type
		if !t.Implements(valuerType) && (t.Kind() == reflect.Pointer || !reflect.PointerTo(t).Implements(valuerType)) {
			return true
		}
	}
	switch c.Class() {
	case "json", "other":
		return true
	case "string":
		// A null type of text (sql.NullString, sql.Null[string]) is
		// written as a string is, as text: its json column is the
		// application's choice when bun's is not json (sql.NullString:
		// varchar) or when its field's own tag says so (type:jsonb; bun
		// sets UserSQLType to the type it discovers when there is none).
		typ := f.IndirectType
		tag, _ := f.Tag.Option("type")
		tagged := strings.EqualFold(tag, "json") || strings.EqualFold(tag, "jsonb")
		return typ.Kind() == reflect.String || typ == nullStringType ||
			tagged && typ.Kind() == reflect.Struct && typ.PkgPath() == "database/sql" && typ.NumField() == 2 && typ.Field(0).Type.Kind() == reflect.String
	}
	return false
}

var nullStringType = reflect.TypeFor[sql.NullString]()

// valueSQLType is a PostgreSQL type that holds the values of column c (of
// a class jsonTakes refuses), for ColumnTypeError.Want: bun's type for
// the value the field holds (sql.NullInt32's int32: integer).
func valueSQLType(c *dbsync.Column) string {
	typ := c.Field().IndirectType
	if typ.Kind() == reflect.Struct && typ.PkgPath() == "database/sql" && typ.NumField() == 2 {
		typ = typ.Field(0).Type // sql.NullInt32's Int32, sql.Null[T]'s V
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch c.Class() {
	case "int":
		switch typ.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Uint8:
			return "smallint"
		case reflect.Int32, reflect.Uint16:
			return "integer"
		}
		return "bigint"
	case "float":
		if typ.Kind() == reflect.Float32 {
			return "real"
		}
		return "double precision"
	case "bool":
		return "boolean"
	case "time":
		return "timestamptz"
	case "uuid":
		return "uuid"
	case "bytes":
		return "bytea"
	}
	return "text"
}
