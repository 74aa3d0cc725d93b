package protocol

import (
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// Command is what an operation did to a row: insert, update or delete.
// models.Command is the same type.
type Command string

// The three commands of the operations log.
const (
	Insert Command = "i"
	Update Command = "u"
	Delete Command = "d"
)

// Valid reports whether c is one of Insert, Update or Delete.
func (c Command) Valid() bool {
	return c == Insert || c == Update || c == Delete
}

// KeyKind is the kind of a tracked table's primary key.
type KeyKind uint8

// Primary key kinds.
const (
	// KeyInt is an integer key, normally autoincrement. Concurrent inserts on
	// two nodes can pick the same key; the merge renumbers the local row.
	KeyInt KeyKind = iota + 1
	// KeyUUID is a github.com/google/uuid UUID: keys never collide.
	KeyUUID
	// KeyText is any other text key chosen by the application.
	KeyText
)

// ForeignKey is a reference from a column of a tracked table to the primary
// key of another tracked table (or the same one).
type ForeignKey struct {
	Column   string // referencing column in this table
	RefTable string // referenced tracked table
	OnDelete string // e.g. "CASCADE", empty when unknown
}

// TableSchema describes a tracked table as the wire and the merge see it:
// enough to read keys and references from a [Row], without the Go model.
// dbsync.Table embeds it.
type TableSchema struct {
	// Name is the SQL table name.
	Name string
	// KeyColumn is the name of the primary key column.
	KeyColumn string
	KeyKind   KeyKind
	// ForeignKeys lists the references to tracked tables.
	ForeignKeys []ForeignKey
	// Uniques lists the unique column sets besides the primary key.
	Uniques [][]string
}

// Schema looks tracked tables up by name. *dbsync.Registry implements it.
type Schema interface {
	// TableSchema returns the tracked table named name, or nil.
	TableSchema(name string) *TableSchema
}

// ParseKey converts the canonical text of a primary key (a row_id) to a
// value that can be passed to a query as an argument.
func (t *TableSchema) ParseKey(key string) (any, error) {
	switch t.KeyKind {
	case KeyInt:
		n, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: table %s: key %q is not an integer", wire.ErrBadRequest, t.Name, key)
		}
		return n, nil
	case KeyUUID:
		u, err := uuid.Parse(key)
		if err != nil {
			return nil, fmt.Errorf("%w: table %s: key %q is not a UUID", wire.ErrBadRequest, t.Name, key)
		}
		return u.String(), nil
	default:
		return key, nil
	}
}

// RowKey returns the canonical primary key text of a row.
func (t *TableSchema) RowKey(row Row) (string, error) {
	k, ok := Key(row[t.KeyColumn])
	if !ok {
		return "", fmt.Errorf("%w: row of %s has no usable primary key", wire.ErrBadRequest, t.Name)
	}
	return t.CanonicalKey(k)
}

// CanonicalKey validates key text from outside and returns its canonical
// form: an integer for integer keys ("042", "+42" and "-0" name the rows 42
// and 0), a lowercase hyphenated UUID for UUID keys.
func (t *TableSchema) CanonicalKey(k string) (string, error) {
	switch t.KeyKind {
	case KeyUUID:
		u, err := uuid.Parse(k)
		if err != nil {
			return "", fmt.Errorf("%w: table %s: key %q is not a UUID", wire.ErrBadRequest, t.Name, k)
		}
		return u.String(), nil
	case KeyInt:
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%w: table %s: key %q is not an integer", wire.ErrBadRequest, t.Name, k)
		}
		return strconv.FormatInt(n, 10), nil
	}
	return k, nil
}
