// Package rowcodec converts the rows of tracked tables between their model
// structs and their wire form (JSON objects, docs/protocol.md "Rows and
// keys"): one codec per column, chosen by dbsync.Track from the column's Go
// type, and the row encoders and decoders built on them. A *dbsync.Table
// holds its codec (Table.Codec); it is internal so the root package's API
// stays what applications write against.
package rowcodec

import (
	"bytes"
	"database/sql"
	"database/sql/driver"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync/internal/wire"
	"github.com/go-dbsync/dbsync/protocol"
)

var (
	timeType    = reflect.TypeFor[time.Time]()
	uuidType    = reflect.TypeFor[uuid.UUID]()
	jsonRawType = reflect.TypeFor[json.RawMessage]()
	jsonMarshal = reflect.TypeFor[json.Marshaler]()
	textMarshal = reflect.TypeFor[encoding.TextMarshaler]()
	valuerType  = reflect.TypeFor[driver.Valuer]()
	// queryAppenderType: bun writes such a value as it appends itself.
	queryAppenderType = reflect.TypeFor[schema.QueryAppender]()
	scannerType       = reflect.TypeFor[sql.Scanner]()
)

var nullJSON = []byte("null")

// fieldCodec converts one struct field to and from its JSON form.
type fieldCodec struct {
	class string
	null  bool // the field carries null and writes NULL (Column.Nilable)
	enc   func(b []byte, v reflect.Value) ([]byte, error)
	dec   func(data []byte, v reflect.Value) error // v is addressable
}

func newFieldCodec(f *schema.Field) (*fieldCodec, error) {
	c := codecFor(f.StructField.Type)
	if c == nil {
		return nil, fmt.Errorf("column %s: unsupported Go type %s", f.Name, f.StructField.Type)
	}
	return c, nil
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

func codecFor(t reflect.Type) *fieldCodec {
	switch {
	case t.Kind() == reflect.Pointer:
		return pointerCodec(t)
	case t == timeType:
		return &fieldCodec{class: "time", enc: encTime, dec: decTime}
	case t == uuidType:
		return &fieldCodec{class: "uuid", enc: encUUID, dec: decUUID}
	case t == jsonRawType:
		// An empty one is null, and written NULL.
		return &fieldCodec{class: "json", null: true, enc: encRawJSON, dec: decRawJSON}
	case implements(t, jsonMarshal) || implements(t, textMarshal):
		c := genericCodec("other")
		c.null = zeroValueIsNull(t)
		return c
	case isSQLNull(t):
		return sqlNullCodec(t)
	case implements(t, valuerType) && implements(t, scannerType):
		c := valuerCodec()
		c.null = zeroValueIsNull(t)
		return c
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &fieldCodec{class: "int", enc: encInt, dec: decInt}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &fieldCodec{class: "int", enc: encUint, dec: decUint}
	case reflect.Float32, reflect.Float64:
		return &fieldCodec{class: "float", enc: encFloat, dec: decFloat}
	case reflect.Bool:
		return &fieldCodec{class: "bool", enc: encBool, dec: decBool}
	case reflect.String:
		return &fieldCodec{class: "string", enc: encString, dec: decString}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			// A nil one is null, and written NULL.
			return &fieldCodec{class: "bytes", null: true, enc: encBytes, dec: decBytes}
		}
		return genericCodec("json")
	case reflect.Map, reflect.Struct, reflect.Array:
		return genericCodec("json")
	case reflect.Interface:
		return genericCodec("json")
	}
	return nil
}

// zeroValueIsNull reports whether t (not a pointer) is written NULL by
// bun when zero (a schema.QueryAppender, as bun.NullTime, or a
// driver.Valuer, as uuid.NullUUID, that appends or returns NULL for it):
// such a field carries null (its zero value, which a null decodes to)
// and writes NULL.
func zeroValueIsNull(t reflect.Type) (null bool) {
	defer func() {
		if recover() != nil {
			null = false
		}
	}()
	zero := reflect.New(t)
	as := func(iface reflect.Type) any {
		if t.Implements(iface) {
			return zero.Elem().Interface()
		}
		if zero.Type().Implements(iface) {
			return zero.Interface()
		}
		return nil
	}
	if a, ok := as(queryAppenderType).(schema.QueryAppender); ok {
		b, err := a.AppendQuery(schema.NewNopQueryGen(), nil)
		return err == nil && strings.EqualFold(string(b), "NULL")
	}
	if v, ok := as(valuerType).(driver.Valuer); ok {
		dv, err := v.Value()
		return err == nil && dv == nil
	}
	return false
}

func pointerCodec(t reflect.Type) *fieldCodec {
	elem := codecFor(t.Elem())
	if elem == nil {
		return nil
	}
	return &fieldCodec{
		class: elem.class,
		null:  true,
		enc: func(b []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return append(b, nullJSON...), nil
			}
			return elem.enc(b, v.Elem())
		},
		dec: func(data []byte, v reflect.Value) error {
			if wire.IsNull(data) {
				v.SetZero()
				return nil
			}
			p := reflect.New(t.Elem())
			if err := elem.dec(data, p.Elem()); err != nil {
				return err
			}
			v.Set(p)
			return nil
		},
	}
}

// isSQLNull recognizes database/sql's Null types (NullString, NullInt64,
// NullTime, Null[T], …): a struct of a value field and a bool field Valid.
func isSQLNull(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.PkgPath() == "database/sql" && t.NumField() == 2 &&
		t.Field(1).Name == "Valid" && t.Field(1).Type.Kind() == reflect.Bool
}

func sqlNullCodec(t reflect.Type) *fieldCodec {
	inner := codecFor(t.Field(0).Type)
	if inner == nil {
		return nil
	}
	return &fieldCodec{
		class: inner.class,
		null:  true,
		enc: func(b []byte, v reflect.Value) ([]byte, error) {
			if !v.Field(1).Bool() {
				return append(b, nullJSON...), nil
			}
			return inner.enc(b, v.Field(0))
		},
		dec: func(data []byte, v reflect.Value) error {
			v.SetZero()
			if wire.IsNull(data) {
				return nil
			}
			if err := inner.dec(data, v.Field(0)); err != nil {
				return err
			}
			v.Field(1).SetBool(true)
			return nil
		},
	}
}

// valuerCodec handles other driver.Valuer + sql.Scanner types by their
// driver value.
func valuerCodec() *fieldCodec {
	return &fieldCodec{
		class: "other",
		enc: func(b []byte, v reflect.Value) ([]byte, error) {
			valuer, ok := v.Interface().(driver.Valuer)
			if !ok {
				valuer = v.Addr().Interface().(driver.Valuer)
			}
			dv, err := valuer.Value()
			if err != nil {
				return nil, err
			}
			if t, ok := dv.(time.Time); ok {
				return encTime(b, reflect.ValueOf(t))
			}
			j, err := json.Marshal(dv)
			if err != nil {
				return nil, err
			}
			return append(b, j...), nil
		},
		dec: func(data []byte, v reflect.Value) error {
			var src any
			if !wire.IsNull(data) {
				d := json.NewDecoder(bytes.NewReader(data))
				d.UseNumber()
				if err := d.Decode(&src); err != nil {
					return err
				}
				if n, ok := src.(json.Number); ok {
					src = numberValue(v.Type(), n)
				}
			}
			if s, ok := src.(string); ok {
				return scanString(v, s)
			}
			return v.Addr().Interface().(sql.Scanner).Scan(src)
		},
	}
}

// probeValue returns the driver value of a value of t (a driver.Valuer
// + sql.Scanner) scanned from src, nil if it does not scan.
func probeValue(t reflect.Type, src any) driver.Value {
	probe := reflect.New(t)
	if probe.Interface().(sql.Scanner).Scan(src) != nil {
		return nil
	}
	valuer, ok := probe.Elem().Interface().(driver.Valuer)
	if !ok {
		valuer = probe.Interface().(driver.Valuer)
	}
	dv, err := valuer.Value()
	if err != nil {
		return nil
	}
	return dv
}

// numberValue returns the driver value a JSON number of a driver.Valuer
// + sql.Scanner of type t stands for: an int64 if it is whole, unless
// the type's driver value is a float64 (json.Marshal writes 2.0 as 2),
// else a float64.
func numberValue(t reflect.Type, n json.Number) any {
	i, err := n.Int64()
	if err != nil {
		if f, err := n.Float64(); err == nil {
			return f
		}
		return n
	}
	if _, ok := probeValue(t, i).(int64); !ok {
		if _, ok := probeValue(t, float64(i)).(float64); ok {
			return float64(i)
		}
	}
	return i
}

// scanString scans s, the JSON string of a driver.Valuer + sql.Scanner
// value, into v as the driver value the encoder wrote it from: a []byte
// (written as base64, json.Marshal's form of one) as the bytes s decodes
// to, a time.Time (written as encTime writes one) as that time, anything
// else as the text s is. A probe (probeValue) tells which: a value of
// the type scanned from that candidate whose Value() is of the same
// kind. Before, s was scanned as it was: a []byte arrived as its base64
// text (a layer more at each hop), and a type that scans only a
// time.Time was refused.
func scanString(v reflect.Value, s string) error {
	isBytes := func(src any) bool { _, ok := probeValue(v.Type(), src).([]byte); return ok }
	isTime := func(src any) bool { _, ok := probeValue(v.Type(), src).(time.Time); return ok }
	scanner := v.Addr().Interface().(sql.Scanner)
	raw, b64err := base64.StdEncoding.DecodeString(s)
	if isBytes(s) || b64err == nil && isBytes(raw) {
		if b64err != nil {
			return fmt.Errorf("want base64 bytes: %w", b64err)
		}
		return scanner.Scan(raw)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil && isTime(t) {
		return scanner.Scan(t)
	}
	return scanner.Scan(s)
}

func genericCodec(class string) *fieldCodec {
	return &fieldCodec{
		class: class,
		enc: func(b []byte, v reflect.Value) ([]byte, error) {
			j, err := json.Marshal(v.Interface())
			if err != nil {
				return nil, err
			}
			return append(b, j...), nil
		},
		dec: func(data []byte, v reflect.Value) error {
			if wire.IsNull(data) {
				v.SetZero()
				return nil
			}
			return json.Unmarshal(data, v.Addr().Interface())
		},
	}
}

func encInt(b []byte, v reflect.Value) ([]byte, error) { return strconv.AppendInt(b, v.Int(), 10), nil }

func decInt(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetInt(0)
		return nil
	}
	n, err := strconv.ParseInt(string(data), 10, v.Type().Bits())
	if err != nil {
		return fmt.Errorf("want an integer, got %.40s", data)
	}
	v.SetInt(n)
	return nil
}

func encUint(b []byte, v reflect.Value) ([]byte, error) {
	return strconv.AppendUint(b, v.Uint(), 10), nil
}

func decUint(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetUint(0)
		return nil
	}
	n, err := strconv.ParseUint(string(data), 10, v.Type().Bits())
	if err != nil {
		return fmt.Errorf("want an unsigned integer, got %.40s", data)
	}
	v.SetUint(n)
	return nil
}

func encFloat(b []byte, v reflect.Value) ([]byte, error) {
	f := v.Float()
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("float value %v has no JSON form", f)
	}
	return strconv.AppendFloat(b, f, 'g', -1, v.Type().Bits()), nil
}

func decFloat(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetFloat(0)
		return nil
	}
	f, err := strconv.ParseFloat(string(data), v.Type().Bits())
	if err != nil || (len(data) > 0 && (data[0] == '"' || data[0] == '+' || data[0] == 'I' || data[0] == 'N')) {
		return fmt.Errorf("want a number, got %.40s", data)
	}
	v.SetFloat(f)
	return nil
}

func encBool(b []byte, v reflect.Value) ([]byte, error) { return strconv.AppendBool(b, v.Bool()), nil }

func decBool(data []byte, v reflect.Value) error {
	switch string(data) {
	case "true":
		v.SetBool(true)
	case "false", "null":
		v.SetBool(false)
	default:
		return fmt.Errorf("want a boolean, got %.40s", data)
	}
	return nil
}

func encString(b []byte, v reflect.Value) ([]byte, error) {
	s := v.String()
	if !utf8.ValidString(s) {
		return nil, errors.New("string is not valid UTF-8; use []byte for binary data")
	}
	return wire.AppendString(b, s), nil
}

func decString(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetString("")
		return nil
	}
	s, err := wire.Unquote(data)
	if err != nil {
		return err
	}
	v.SetString(s)
	return nil
}

func encBytes(b []byte, v reflect.Value) ([]byte, error) {
	if v.IsNil() {
		return append(b, nullJSON...), nil
	}
	raw := v.Bytes()
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"'), nil
}

func decBytes(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetZero()
		return nil
	}
	s, err := wire.Unquote(data)
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("want base64 bytes: %w", err)
	}
	v.SetBytes(raw)
	return nil
}

func encTime(b []byte, v reflect.Value) ([]byte, error) {
	t := v.Interface().(time.Time)
	// The server takes UTC years 1-9999 (PostgreSQL's and RFC 3339's
	// common range): refused here, the row is named (ValueError).
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("time %v is outside years 1-9999 (UTC)", t)
	}
	// RFC 3339 offsets have no seconds: a zone whose offset has some
	// (local mean time, as a driver returns an old time in time.Local)
	// would be written rounded, and the time read back shifted. Such a
	// time is written in UTC.
	if _, off := t.Zone(); off%60 != 0 {
		t = t.UTC()
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

func decTime(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.Set(reflect.ValueOf(time.Time{}))
		return nil
	}
	s, err := wire.Unquote(data)
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time: %w", err)
	}
	v.Set(reflect.ValueOf(t))
	return nil
}

func encUUID(b []byte, v reflect.Value) ([]byte, error) {
	u := v.Interface().(uuid.UUID)
	b = append(b, '"')
	b = append(b, u.String()...)
	return append(b, '"'), nil
}

func decUUID(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.Set(reflect.ValueOf(uuid.Nil))
		return nil
	}
	s, err := wire.Unquote(data)
	if err != nil {
		return err
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return fmt.Errorf("want a UUID: %w", err)
	}
	v.Set(reflect.ValueOf(u))
	return nil
}

func encRawJSON(b []byte, v reflect.Value) ([]byte, error) {
	raw := v.Bytes()
	if len(raw) == 0 {
		return append(b, nullJSON...), nil
	}
	if !json.Valid(raw) {
		return nil, errors.New("json.RawMessage value is not valid JSON")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return append(b, buf.Bytes()...), nil
}

func decRawJSON(data []byte, v reflect.Value) error {
	if wire.IsNull(data) {
		v.SetZero()
		return nil
	}
	if !json.Valid(data) {
		return errors.New("invalid JSON value")
	}
	v.SetBytes(bytes.Clone(data))
	return nil
}

// Column is the codec of one column.
type Column struct {
	Name  string
	Field *schema.Field
	codec *fieldCodec
	index int // position in Table.Columns
}

// NewColumn returns the codec of the column of field f, at position index
// of its table; an error for a Go type no codec carries.
func NewColumn(f *schema.Field, index int) (*Column, error) {
	codec, err := newFieldCodec(f)
	if err != nil {
		return nil, err
	}
	return &Column{Name: f.Name, Field: f, codec: codec, index: index}, nil
}

// Class is the column's wire class ("int", "string", "time", ...), part of
// the schema fingerprint.
func (c *Column) Class() string { return c.codec.class }

// Nilable reports whether the column's field can be nil (a pointer, a
// database/sql null type, a []byte, an empty json.RawMessage, a
// driver.Valuer whose zero value is NULL such as bun.NullTime): the only
// fields that carry and write NULL. A NULL read into another field is its
// zero value.
func (c *Column) Nilable() bool { return c.codec.null }

// Table is the codec of one table's rows.
type Table struct {
	Name    string
	Columns []*Column // in table order, primary key first
	PK      *Column
	typ     reflect.Type
	byName  map[string]*Column
}

// NewTable returns the codec of table name, whose model struct type is
// typ, from its columns' codecs in table order; pk names the primary key.
func NewTable(name string, typ reflect.Type, cols []*Column, pk string) *Table {
	t := &Table{Name: name, Columns: cols, typ: typ, byName: make(map[string]*Column, len(cols))}
	for _, c := range cols {
		t.byName[c.Name] = c
	}
	t.PK = t.byName[pk]
	return t
}

// NewModel returns a pointer to a new zero value of the table's model.
func (t *Table) NewModel() reflect.Value { return reflect.New(t.typ) }

// KeyOf returns the canonical text of the primary key of strct, a model
// struct value (not a pointer), as stored in sync_operations.row_id.
func (t *Table) KeyOf(strct reflect.Value) string { return KeyText(t.PK.Field.Value(strct)) }

// KeyText is the canonical text of a primary key or foreign key value, as
// stored in sync_operations.row_id. A nil pointer gives "".
func KeyText(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == uuidType:
		return v.Interface().(uuid.UUID).String()
	case isSQLNull(v.Type()):
		if !v.Field(1).Bool() {
			return ""
		}
		return KeyText(v.Field(0))
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.String:
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

// AppendRow appends the JSON object of one model struct (not a pointer):
// every column, in table order.
func (t *Table) AppendRow(b []byte, strct reflect.Value) ([]byte, error) {
	b = append(b, '{')
	for i, c := range t.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendString(b, c.Name)
		b = append(b, ':')
		var err error
		if b, err = t.encodeValue(b, c, strct); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// encodeValue appends the JSON of one column of strct; a value that cannot
// be encoded fails with a [*protocol.ValueError] naming the row.
func (t *Table) encodeValue(b []byte, c *Column, strct reflect.Value) ([]byte, error) {
	b, err := c.codec.enc(b, c.Field.Value(strct))
	if err != nil {
		return nil, &protocol.ValueError{Table: t.Name, Key: t.KeyOf(strct), Column: c.Name, Err: err}
	}
	return b, nil
}

// decodeValue decodes the JSON of one column into v (addressable). Text the
// decoder would alter (see wire.CheckText) is refused.
func decodeValue(c *Column, data []byte, v reflect.Value) error {
	if err := wire.CheckText(data); err != nil {
		return err
	}
	return c.codec.dec(data, v)
}

// EncodeRow returns a model struct (or pointer to one) as a [protocol.Row].
func (t *Table) EncodeRow(model any) (protocol.Row, error) {
	strct := reflect.Indirect(reflect.ValueOf(model))
	raw, err := t.AppendRow(nil, strct)
	if err != nil {
		return nil, err
	}
	return protocol.ParseRow(raw)
}

// DecodeRow builds a new model struct from a row and returns a pointer to
// it. Every column must be present; an unknown column is an error wrapping
// wire.ErrUnknownColumn.
func (t *Table) DecodeRow(row protocol.Row) (reflect.Value, error) {
	ptr := t.NewModel()
	strct := ptr.Elem()
	for name := range row {
		if t.byName[name] == nil {
			return reflect.Value{}, fmt.Errorf("%w: %s.%s", wire.ErrUnknownColumn, t.Name, name)
		}
	}
	for _, c := range t.Columns {
		raw, ok := row[c.Name]
		if !ok {
			return reflect.Value{}, fmt.Errorf("%w: row of %s lacks column %s", wire.ErrBadRequest, t.Name, c.Name)
		}
		fv := fieldByIndexAlloc(strct, c.Field.Index)
		if err := decodeValue(c, raw, fv); err != nil {
			key, _ := protocol.Key(row[t.PK.Name])
			return reflect.Value{}, &protocol.ValueError{Table: t.Name, Key: key, Column: c.Name, Err: fmt.Errorf("%w: %w", wire.ErrBadRequest, err)}
		}
	}
	return ptr, nil
}

func fieldByIndexAlloc(v reflect.Value, index []int) reflect.Value {
	if len(index) == 1 {
		return v.Field(index[0])
	}
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// TupleKey returns the canonical JSON of the values of cols in strct (a
// model struct value), for comparing unique values. ok is false when one of
// them is NULL.
func (t *Table) TupleKey(strct reflect.Value, cols []string) (key string, ok bool, err error) {
	var b []byte
	for i, name := range cols {
		c := t.byName[name]
		if c == nil {
			return "", false, fmt.Errorf("%w: %s.%s", wire.ErrUnknownColumn, t.Name, name)
		}
		if i > 0 {
			b = append(b, ',')
		}
		start := len(b)
		if b, err = t.encodeValue(b, c, strct); err != nil {
			return "", false, err
		}
		if wire.IsNull(b[start:]) {
			return "", false, nil
		}
	}
	return string(b), true, nil
}

// RowTupleKey is TupleKey for a wire row.
func (t *Table) RowTupleKey(row protocol.Row, cols []string) (key string, ok bool) {
	var b []byte
	for i, name := range cols {
		v, present := row[name]
		if !present || wire.IsNull(v) {
			return "", false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return string(b), true
}

// DecodeValue decodes one column value from JSON into strct (an
// addressable model struct value).
func (t *Table) DecodeValue(strct reflect.Value, column string, raw []byte) error {
	c := t.byName[column]
	if c == nil {
		return fmt.Errorf("%w: %s.%s", wire.ErrUnknownColumn, t.Name, column)
	}
	if err := decodeValue(c, raw, fieldByIndexAlloc(strct, c.Field.Index)); err != nil {
		return fmt.Errorf("%w: %s.%s: %w", wire.ErrBadRequest, t.Name, column, err)
	}
	return nil
}

// ParseFilterValue reads the value of a query filter (eq.<column>) given
// as text, into strct (an addressable model struct value). The text null is
// SQL NULL (isNull). Any other text is the column's value in its wire form
// (docs/protocol.md, "Rows and keys"): JSON such as true, 42, 2.5 or
// "groceries"; where that form is a JSON string (string, time, uuid and
// bytes columns) the quotes may be left out. Text that is neither is an
// error wrapping wire.ErrBadRequest that names the filter and the form wanted:
// values are never converted between types (eq.done=1 on a boolean column
// is refused; write true).
func (t *Table) ParseFilterValue(strct reflect.Value, column, text string) (isNull bool, err error) {
	c := t.byName[column]
	if c == nil {
		return false, fmt.Errorf("%w: %s.%s", wire.ErrUnknownColumn, t.Name, column)
	}
	if text == "null" {
		return true, nil
	}
	// Text a decoder would alter (bytes that are not UTF-8, a JSON escape
	// of an unpaired surrogate, both read as U+FFFD) is refused, as in a
	// push.
	if !utf8.ValidString(text) {
		return false, fmt.Errorf("%w: eq.%s: the value is not valid UTF-8", wire.ErrBadRequest, column)
	}
	field := fieldByIndexAlloc(strct, c.Field.Index)
	var jsonErr error
	if json.Valid([]byte(text)) {
		if err := wire.CheckText([]byte(text)); err != nil {
			return false, fmt.Errorf("%w: eq.%s: %w", wire.ErrBadRequest, column, err)
		}
		if jsonErr = c.codec.dec([]byte(text), field); jsonErr == nil {
			return false, nil
		}
	}
	strErr := c.codec.dec(wire.AppendString(nil, text), field)
	if strErr == nil {
		return false, nil
	}
	// Report the reading the client most likely meant: the text as it is
	// for classes written as JSON strings, else its JSON value.
	cause := jsonErr
	if cause == nil || stringClass(c.codec.class) && !strings.HasPrefix(text, `"`) {
		cause = strErr
	}
	return false, fmt.Errorf("%w: eq.%s=%s: not a value of %s.%s (a %s column: %s): %w",
		wire.ErrBadRequest, column, text, t.Name, column, c.codec.class, filterForm(c.codec.class), cause)
}

// stringClass reports whether values of a column class are JSON strings on
// the wire.
func stringClass(class string) bool {
	switch class {
	case "string", "time", "uuid", "bytes":
		return true
	}
	return false
}

// filterForm says, by column class, what a query filter value looks like.
func filterForm(class string) string {
	switch class {
	case "int":
		return "a JSON integer such as 42"
	case "float":
		return "a JSON number such as 2.5"
	case "bool":
		return "true or false"
	case "string":
		return "any text, or a JSON string"
	case "time":
		return "an RFC 3339 time such as 2026-11-23T10:00:00Z"
	case "bytes":
		return "standard base64"
	case "uuid":
		return "a UUID"
	case "json":
		return "a JSON value"
	}
	return "its JSON form"
}

// DecodeRaw decodes one row object straight into a new model struct (a
// pointer), as DecodeRow does for a [protocol.Row] but without building
// the map.
func (t *Table) DecodeRaw(raw []byte) (reflect.Value, error) { return t.decodeRaw(raw, "") }

// DecodeRawWithout is DecodeRaw for a row sent without the column skip
// (left at its zero value), as written by AppendRowWithout.
func (t *Table) DecodeRawWithout(raw []byte, skip string) (reflect.Value, error) {
	return t.decodeRaw(raw, skip)
}

// rawKey is the key text of a row on the wire, for error messages ("" if
// it has none).
func rawKey(t *Table, raw []byte) string {
	row, err := protocol.ParseRow(raw)
	if err != nil {
		return ""
	}
	key, _ := protocol.Key(row[t.PK.Name])
	return key
}

func (t *Table) decodeRaw(raw []byte, skip string) (reflect.Value, error) {
	ptr := t.NewModel()
	strct := ptr.Elem()
	seen := make([]bool, len(t.Columns))
	n := 0
	// Names as bytes: looking them up allocates nothing.
	err := wire.ForEachMemberBytes(raw, func(name, v []byte) error {
		c := t.byName[string(name)]
		if c == nil || string(name) == skip {
			return fmt.Errorf("%w: %s.%s", wire.ErrUnknownColumn, t.Name, name)
		}
		i := c.index
		if seen[i] {
			return fmt.Errorf("%w: duplicate column %q", wire.ErrBadRequest, name)
		}
		seen[i] = true
		n++
		if err := decodeValue(c, v, fieldByIndexAlloc(strct, c.Field.Index)); err != nil {
			return &protocol.ValueError{Table: t.Name, Key: rawKey(t, raw), Column: c.Name, Err: fmt.Errorf("%w: %w", wire.ErrBadRequest, err)}
		}
		return nil
	})
	if err != nil {
		return reflect.Value{}, err
	}
	want := len(t.Columns)
	if skip != "" {
		want--
	}
	if n != want {
		for i, ok := range seen {
			if !ok && t.Columns[i].Name != skip {
				return reflect.Value{}, fmt.Errorf("%w: row of %s lacks column %s", wire.ErrBadRequest, t.Name, t.Columns[i].Name)
			}
		}
	}
	return ptr, nil
}

// AppendRowWithout appends the JSON object of a model struct without the
// column skip (a local primary key, in peer-to-peer sync).
func (t *Table) AppendRowWithout(b []byte, strct reflect.Value, skip string) ([]byte, error) {
	b = append(b, '{')
	first := true
	for _, c := range t.Columns {
		if c.Name == skip {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = wire.AppendString(b, c.Name)
		b = append(b, ':')
		var err error
		if b, err = t.encodeValue(b, c, strct); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}
