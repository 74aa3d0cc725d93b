package dbsync

import (
	"fmt"
	"hash/crc32"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync/internal/rowcodec"
	"github.com/go-dbsync/dbsync/protocol"
)

// Direction says which way a tracked table's changes travel.
type Direction uint8

// Directions, as python-sync-db's track('push') and track('pull').
const (
	// DirectionBoth: changes are pushed by clients and pulled by clients.
	DirectionBoth Direction = iota
	// DirectionPush: clients push changes; pulls never send the table.
	DirectionPush
	// DirectionPull: clients only receive the table; local changes to it
	// are not captured on a client.
	DirectionPull
)

// String returns "both", "push" or "pull".
func (d Direction) String() string {
	switch d {
	case DirectionPush:
		return "push"
	case DirectionPull:
		return "pull"
	default:
		return "both"
	}
}

// Pushed reports whether clients push the table's changes.
func (d Direction) Pushed() bool { return d != DirectionPull }

// Pulled reports whether clients pull the table's changes.
func (d Direction) Pulled() bool { return d != DirectionPush }

// Model wraps a bun model with tracking options; see [PullOnly] and
// [PushOnly]. A plain model passed to [Track] is tracked in both directions.
type Model struct {
	// Model is the bun model: a pointer to a struct, e.g. (*Todo)(nil).
	Model any
	// Direction is the way the table's changes travel.
	Direction Direction
}

// PullOnly marks a model whose changes clients only receive.
func PullOnly(model any) Model { return Model{Model: model, Direction: DirectionPull} }

// PushOnly marks a model whose changes clients send but never receive.
func PushOnly(model any) Model { return Model{Model: model, Direction: DirectionPush} }

// Column is one column of a tracked table.
type Column struct {
	// Name is the SQL column name.
	Name  string
	field *schema.Field
	codec *rowcodec.Column
}

// Class returns the column's type class on the wire (int, float, bool,
// string, time, uuid, bytes, json or other): what a node announces of it
// (protocol.NodeSchema).
func (c *Column) Class() string { return c.codec.Class() }

// Field returns bun's description of the column.
func (c *Column) Field() *schema.Field { return c.field }

// KeyOf returns the canonical key text of the column's value in strct (a
// model struct value), as for foreign keys: "" for NULL.
func (c *Column) KeyOf(strct reflect.Value) string {
	return rowcodec.KeyText(c.field.Value(strct))
}

// Table is a tracked table as dbsync sees it. The embedded
// [protocol.TableSchema] holds its name, key kind, foreign keys (from bun
// relations and, after oplog.Install, from the database catalog) and unique
// column sets, and the key methods (CanonicalKey, RowKey, ParseKey).
type Table struct {
	protocol.TableSchema
	// ModelName is the Go type name.
	ModelName string
	// ContentTypeID is the stable table id stored in sync_operations: the
	// CRC-32 (IEEE) of Name.
	ContentTypeID int64
	// Direction is the way the table's changes travel (PullOnly,
	// PushOnly, or both).
	Direction Direction
	// PK is the primary key column (dbsync requires exactly one); its name
	// is KeyColumn.
	PK *Column
	// Columns are all columns, primary key first.
	Columns []*Column

	schema *schema.Table
	byName map[string]*Column
	rank   int
	codec  *rowcodec.Table
}

// Schema returns bun's table metadata for the registry's dialect.
func (t *Table) Schema() *schema.Table { return t.schema }

// Column returns the column named name, or nil.
func (t *Table) Column(name string) *Column { return t.byName[name] }

// Rank is the table's position in the registry's dependency order: a table
// comes after the tables it references.
func (t *Table) Rank() int { return t.rank }

// Codec returns the codec of the table's rows, for dbsync's own packages:
// model structs to and from their wire form (package internal/rowcodec).
// It is exported only because client, server, peer and oplog are other
// packages than this one; its type and methods are not part of dbsync's
// API and change without notice. Applications read and write rows with
// bun, and their wire form with [Column.KeyOf] and package protocol.
func (t *Table) Codec() *rowcodec.Table { return t.codec }

// ContentTypeID returns the stable id of a table name: CRC-32 (IEEE).
func ContentTypeID(table string) int64 {
	return int64(crc32.ChecksumIEEE([]byte(table)))
}

// Registry holds the tracked tables of one database. Build it with [Track]
// (and [Registry.Track]) before the database is used for sync; once it is
// handed to client.New, server.New or peer.New it is read-only, safe for
// concurrent reads, and must not be tracked further. client.New, server.New and peer.New work on their
// own copy ([Registry.Clone]), which they complete with the foreign keys
// and unique indexes of the database catalog: the registry passed to them
// is left as it was.
type Registry struct {
	dialect schema.Dialect
	tables  []*Table // registration order
	sorted  []*Table // dependency order, parents first
	byName  map[string]*Table
	byCT    map[int64]*Table
	byType  map[reflect.Type]*Table
}

// Track registers bun models for synchronization and returns the registry
// of db's tracked tables. Each model is a pointer to a struct, e.g.
// (*Todo)(nil), optionally wrapped in [PullOnly] or [PushOnly]. A table
// is tracked by one model, once: a model given twice (wrapped or not, here
// or to [Registry.Track] later) or two models of one table are refused
// with [ErrInvalidModel] naming the table.
//
// Track reads table names, columns, the primary key, unique tags and
// belongs-to relations from bun's table metadata for db's dialect (which
// decides names, column types and quoting): db is used only for
// db.Dialect(). Track sends no query to the database; capture starts when
// oplog.Install (called by client.New and server.New) has created the sync
// tables and the per-table triggers.
func Track(db bun.IDB, models ...any) (*Registry, error) {
	r := &Registry{
		dialect: db.Dialect(),
		byName:  map[string]*Table{},
		byCT:    map[int64]*Table{},
		byType:  map[reflect.Type]*Table{},
	}
	if err := r.Track(models...); err != nil {
		return nil, err
	}
	return r, nil
}

// Track adds more models to the registry; see the function [Track]. Call
// it only while building the registry, before it is handed to client.New,
// server.New or peer.New (which keep their own copy: models tracked later
// are not synced).
func (r *Registry) Track(models ...any) error {
	for _, m := range models {
		dir := DirectionBoth
		if w, ok := m.(Model); ok {
			m, dir = w.Model, w.Direction
		}
		if err := r.add(m, dir); err != nil {
			return err
		}
	}
	r.resolve()
	return nil
}

func (r *Registry) add(model any, dir Direction) error {
	typ := reflect.TypeOf(model)
	if typ == nil || typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%w: model must be a pointer to a struct, got %T", ErrInvalidModel, model)
	}
	st := r.dialect.Tables().Get(typ.Elem())
	if _, dup := r.byType[st.Type]; dup {
		return fmt.Errorf("%w: table %s: model %s is tracked twice", ErrInvalidModel, st.Name, st.TypeName)
	}
	if strings.Contains(st.Name, ".") {
		return fmt.Errorf("%w: table %s: schema-qualified table names are not supported; put the tables on the search_path", ErrInvalidModel, st.Name)
	}
	if strings.HasPrefix(st.Name, "sync_") {
		return fmt.Errorf("%w: table %s: the sync_ prefix is reserved for dbsync", ErrInvalidModel, st.Name)
	}
	if len(st.PKs) != 1 {
		return fmt.Errorf("%w: table %s: exactly one primary key column is required, found %d", ErrInvalidModel, st.Name, len(st.PKs))
	}
	if _, dup := r.byName[st.Name]; dup {
		return fmt.Errorf("%w: table %s is tracked by two models", ErrInvalidModel, st.Name)
	}
	t := &Table{
		TableSchema:   protocol.TableSchema{Name: st.Name},
		ModelName:     st.TypeName,
		ContentTypeID: ContentTypeID(st.Name),
		Direction:     dir,
		schema:        st,
		byName:        map[string]*Column{},
	}
	if other, dup := r.byCT[t.ContentTypeID]; dup {
		return fmt.Errorf("%w: tables %s and %s have the same content type id", ErrInvalidModel, st.Name, other.Name)
	}
	switch pk := st.PKs[0].IndirectType; {
	case pk == reflect.TypeFor[uuid.UUID]():
		t.KeyKind = protocol.KeyUUID
	case isIntKind(pk.Kind()):
		t.KeyKind = protocol.KeyInt
	case pk.Kind() == reflect.String:
		t.KeyKind = protocol.KeyText
	default:
		return fmt.Errorf("%w: table %s: primary key %s has type %s; want an integer, a string or uuid.UUID",
			ErrInvalidModel, st.Name, st.PKs[0].Name, pk)
	}
	codecs := make([]*rowcodec.Column, 0, len(st.Fields))
	for _, f := range st.Fields {
		codec, err := rowcodec.NewColumn(f, len(t.Columns))
		if err != nil {
			return fmt.Errorf("%w: table %s: %w", ErrInvalidModel, st.Name, err)
		}
		c := &Column{Name: f.Name, field: f, codec: codec}
		t.Columns = append(t.Columns, c)
		t.byName[c.Name] = c
		codecs = append(codecs, codec)
	}
	t.PK = t.byName[st.PKs[0].Name]
	t.codec = rowcodec.NewTable(st.Name, st.Type, codecs, t.PK.Name)
	t.KeyColumn = t.PK.Name
	names := make([]string, 0, len(st.Unique))
	for name := range st.Unique {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" {
			// A bare `unique` tag: each column is a constraint of its own
			// (as bun creates them).
			for _, f := range st.Unique[name] {
				t.addUnique([]string{f.Name})
			}
			continue
		}
		cols := make([]string, 0, len(st.Unique[name]))
		for _, f := range st.Unique[name] {
			cols = append(cols, f.Name)
		}
		t.addUnique(cols)
	}
	r.tables = append(r.tables, t)
	r.byName[t.Name] = t
	r.byCT[t.ContentTypeID] = t
	r.byType[st.Type] = t
	return nil
}

// resolve recomputes foreign keys from bun relations and the dependency
// order. It runs after every change to the set of tables.
func (r *Registry) resolve() {
	for _, t := range r.tables {
		for _, rel := range t.schema.Relations {
			if rel.Type != schema.BelongsToRelation || len(rel.BasePKs) != 1 {
				continue
			}
			ref, ok := r.byType[rel.JoinTable.Type]
			if !ok || len(rel.JoinPKs) != 1 || rel.JoinPKs[0].Name != ref.PK.Name {
				continue
			}
			t.addForeignKey(protocol.ForeignKey{Column: rel.BasePKs[0].Name, RefTable: ref.Name, OnDelete: onDeleteAction(rel.OnDelete)})
		}
	}
	r.sort()
}

func onDeleteAction(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	return strings.TrimSpace(strings.TrimPrefix(s, "ON DELETE"))
}

func (t *Table) addForeignKey(fk protocol.ForeignKey) bool {
	if t.byName[fk.Column] == nil {
		return false
	}
	for i, have := range t.ForeignKeys {
		if have.Column == fk.Column && have.RefTable == fk.RefTable {
			if have.OnDelete == "" {
				t.ForeignKeys[i].OnDelete = fk.OnDelete
			}
			return false
		}
	}
	t.ForeignKeys = append(t.ForeignKeys, fk)
	return true
}

func (t *Table) addUnique(cols []string) bool {
	if len(cols) == 0 || (len(cols) == 1 && cols[0] == t.PK.Name) {
		return false
	}
	for _, c := range cols {
		if t.byName[c] == nil {
			return false
		}
	}
	sorted := slices.Clone(cols)
	sort.Strings(sorted)
	for _, have := range t.Uniques {
		h := slices.Clone(have)
		sort.Strings(h)
		if slices.Equal(h, sorted) {
			return false
		}
	}
	t.Uniques = append(t.Uniques, cols)
	return true
}

// Clone returns a copy of the registry that shares nothing mutable with r:
// tracking more models in one leaves the other as it was. The clone of nil is nil.
func (r *Registry) Clone() *Registry {
	if r == nil {
		return nil
	}
	c := &Registry{
		dialect: r.dialect,
		tables:  make([]*Table, len(r.tables)),
		byName:  make(map[string]*Table, len(r.tables)),
		byCT:    make(map[int64]*Table, len(r.tables)),
		byType:  make(map[reflect.Type]*Table, len(r.tables)),
	}
	for i, t := range r.tables {
		ct := *t
		ct.ForeignKeys = slices.Clone(t.ForeignKeys)
		ct.Uniques = nil
		for _, u := range t.Uniques {
			ct.Uniques = append(ct.Uniques, slices.Clone(u))
		}
		c.tables[i] = &ct
		c.byName[ct.Name] = &ct
		c.byCT[ct.ContentTypeID] = &ct
		c.byType[ct.schema.Type] = &ct
	}
	c.sort()
	return c
}

// Catalog holds constraints of tracked tables that the database catalog
// declares and the models may not show: references without a bun relation
// and unique constraints or indexes. oplog.Install reads it;
// [Registry.WithCatalog] completes a registry with it.
type Catalog struct {
	// ForeignKeys are references between tracked tables, by referencing
	// table.
	ForeignKeys map[string][]protocol.ForeignKey
	// Uniques are the column sets of unique constraints, by table.
	Uniques map[string][][]string
}

// WithCatalog returns a copy of r completed with the constraints of c
// (references to untracked tables, unknown columns and tables are
// ignored; a reference already known gets its ON DELETE action when it
// had none), ordered by all its references. r itself is not changed.
func (r *Registry) WithCatalog(c Catalog) *Registry {
	out := r.Clone()
	if out == nil {
		return nil
	}
	for _, t := range out.tables {
		for _, fk := range c.ForeignKeys[t.Name] {
			if out.byName[fk.RefTable] != nil {
				t.addForeignKey(fk)
			}
		}
		for _, cols := range c.Uniques[t.Name] {
			t.addUnique(cols)
		}
	}
	out.sort()
	return out
}

// sort orders tables so that referenced tables come first (Kahn's algorithm,
// registration order among peers; tables on a reference cycle keep
// registration order).
func (r *Registry) sort() {
	indeg := map[*Table]int{}
	children := map[*Table][]*Table{}
	for _, t := range r.tables {
		seen := map[string]bool{}
		for _, fk := range t.ForeignKeys {
			if fk.RefTable == t.Name || seen[fk.RefTable] {
				continue
			}
			seen[fk.RefTable] = true
			parent := r.byName[fk.RefTable]
			indeg[t]++
			children[parent] = append(children[parent], t)
		}
	}
	out := make([]*Table, 0, len(r.tables))
	done := map[*Table]bool{}
	for len(out) < len(r.tables) {
		progress := false
		for _, t := range r.tables {
			if done[t] || indeg[t] > 0 {
				continue
			}
			done[t] = true
			out = append(out, t)
			progress = true
			for _, c := range children[t] {
				indeg[c]--
			}
		}
		if !progress { // cycle: release the first blocked table
			for _, t := range r.tables {
				if !done[t] {
					indeg[t] = 0
					break
				}
			}
		}
	}
	for i, t := range out {
		t.rank = i
	}
	r.sorted = out
}

// Dialect returns the bun dialect the registry was built for.
func (r *Registry) Dialect() schema.Dialect { return r.dialect }

// Tables returns the tracked tables, referenced tables before the tables
// that reference them.
func (r *Registry) Tables() []*Table { return slices.Clone(r.sorted) }

// Table returns the tracked table named name, or nil.
func (r *Registry) Table(name string) *Table { return r.byName[name] }

// TableSchema returns the wire description of the tracked table named
// name, or nil: *Registry is a [protocol.Schema].
func (r *Registry) TableSchema(name string) *protocol.TableSchema {
	if t := r.byName[name]; t != nil {
		return &t.TableSchema
	}
	return nil
}

// ByContentType returns the tracked table with the content type id, or nil.
func (r *Registry) ByContentType(id int64) *Table { return r.byCT[id] }

// TableOf returns the tracked table of a model (pointer or struct value, or
// reflect.Type), or nil.
func (r *Registry) TableOf(model any) *Table {
	typ, ok := model.(reflect.Type)
	if !ok {
		typ = reflect.TypeOf(model)
	}
	for typ != nil && (typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice) {
		typ = typ.Elem()
	}
	return r.byType[typ]
}

// Children returns, for a tracked table, the foreign keys of other tracked
// tables (or itself) that reference it, with the referencing table.
func (r *Registry) Children(table string) []ChildRef {
	var out []ChildRef
	for _, t := range r.sorted {
		for _, fk := range t.ForeignKeys {
			if fk.RefTable == table {
				out = append(out, ChildRef{Table: t, FK: fk})
			}
		}
	}
	return out
}

// ChildRef is a foreign key seen from the referenced table.
type ChildRef struct {
	// Table is the referencing table.
	Table *Table
	// FK is its foreign key to the referenced table.
	FK protocol.ForeignKey
}

// Fingerprint summarizes the tracked schema: table names, key kinds, column
// names and coarse column types (protocol.NodeSchema.Fingerprint of
// [Registry.NodeSchema]). Requests carry it in the X-Dbsync-Schema header,
// and the schema itself in X-Dbsync-Tables.
func (r *Registry) Fingerprint() string { return r.NodeSchema().Fingerprint() }

func isIntKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}
