package dbsync

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/go-dbsync/dbsync/internal/rowcodec"
	"github.com/go-dbsync/dbsync/protocol"
)

// SchemaError reports the differences between a node's schema and the
// server's that the server cannot serve (docs/protocol.md "Schema changes"): a
// table or column the node has and the server does not (a drop, a rename,
// or a node newer than the server), a column whose type class or a table
// whose key differs, a column the server requires (NOT NULL without a
// default) that the node does not know, a column NOT NULL on the side a
// NULL would reach (server.Server.CheckNullable). Additive differences — the server
// has tables, columns or indexes the node lacks — are not errors. It wraps
// ErrSchemaMismatch; over HTTP it is a 409 schema_mismatch whose detail
// lists the differences. It lists at most MaxSchemaDifferences; More
// counts the others (JSON schema_more).
type SchemaError struct {
	Differences []protocol.SchemaDifference
	// More counts the differences found beyond those listed.
	More int
}

// MaxSchemaDifferences bounds the differences a SchemaError lists (Add):
// an announcement of up to protocol.MaxSchemaBytes could name thousands.
const MaxSchemaDifferences = 32

// Add lists d, or counts it in More once MaxSchemaDifferences are listed.
func (e *SchemaError) Add(d protocol.SchemaDifference) {
	if len(e.Differences) >= MaxSchemaDifferences {
		e.More++
		return
	}
	e.Differences = append(e.Differences, d)
}

// Error implements error.
func (e *SchemaError) Error() string {
	parts := make([]string, len(e.Differences))
	for i, d := range e.Differences {
		parts[i] = d.String()
	}
	if e.More > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", e.More))
	}
	return "dbsync: schema mismatch: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrSchemaMismatch.
func (e *SchemaError) Unwrap() error { return ErrSchemaMismatch }

// NodeSchema returns the schema a node with this registry announces: every
// tracked table with its key kind, primary key and columns with their type
// classes, normalized.
func (r *Registry) NodeSchema() *protocol.NodeSchema {
	s := &protocol.NodeSchema{Tables: make([]protocol.SchemaTable, 0, len(r.tables))}
	for _, t := range r.tables {
		st := protocol.SchemaTable{Name: t.Name, KeyKind: t.KeyKind, Columns: []protocol.SchemaColumn{{Name: t.PK.Name, Class: t.PK.codec.Class()}}}
		for _, c := range t.Columns {
			if c != t.PK {
				st.Columns = append(st.Columns, protocol.SchemaColumn{Name: c.Name, Class: c.codec.Class()})
			}
		}
		s.Tables = append(s.Tables, st)
	}
	s.Normalize()
	return s
}

// Project returns the registry as a node announcing schema sees it: only
// the tables and columns the node knows (foreign keys and unique column
// sets over them), for reading and writing the node's rows. It refuses
// with a [*SchemaError] listing every difference the node could not be
// served with: a table or column the registry lacks, a different key or
// type class. When the node knows everything r tracks, Project returns r.
func (r *Registry) Project(schema *protocol.NodeSchema) (*Registry, error) {
	se := &SchemaError{}
	for _, nt := range schema.Tables {
		t := r.byName[nt.Name]
		if t == nil {
			se.Add(protocol.SchemaDifference{Table: nt.Name, Problem: "the server does not track this table (dropped or renamed there, or the node is newer)"})
			continue
		}
		if nt.Key() != t.PK.Name || nt.KeyKind != t.KeyKind {
			se.Add(protocol.SchemaDifference{Table: nt.Name, Column: nt.Key(), Problem: "the primary key differs",
				Node: keyText(nt.Key(), nt.KeyKind), Server: keyText(t.PK.Name, t.KeyKind)})
		}
		for _, nc := range nt.Columns {
			c := t.byName[nc.Name]
			switch {
			case c == nil:
				se.Add(protocol.SchemaDifference{Table: nt.Name, Column: nc.Name, Node: nc.Class,
					Problem: "the server does not have this column (dropped or renamed there, or the node is newer)"})
			case c.codec.Class() != nc.Class:
				se.Add(protocol.SchemaDifference{Table: nt.Name, Column: nc.Name, Node: nc.Class, Server: c.codec.Class(),
					Problem: "the column's type differs"})
			}
		}
	}
	if len(se.Differences) > 0 {
		return nil, se
	}
	if r.covered(schema) {
		return r, nil
	}
	out := &Registry{
		dialect: r.dialect,
		byName:  map[string]*Table{},
		byCT:    map[int64]*Table{},
		byType:  map[reflect.Type]*Table{},
	}
	for _, t := range r.tables {
		nt := schema.Table(t.Name)
		if nt == nil {
			continue
		}
		out.tables = append(out.tables, t.project(nt))
	}
	for _, t := range out.tables {
		out.byName[t.Name] = t
		out.byCT[t.ContentTypeID] = t
		out.byType[t.schema.Type] = t
	}
	for _, t := range out.tables {
		fks := t.ForeignKeys[:0:0]
		for _, fk := range t.ForeignKeys {
			if out.byName[fk.RefTable] != nil {
				fks = append(fks, fk)
			}
		}
		t.ForeignKeys = fks
	}
	out.sort()
	return out, nil
}

// covered reports whether schema names every table and column of r.
func (r *Registry) covered(schema *protocol.NodeSchema) bool {
	if len(schema.Tables) != len(r.tables) {
		return false
	}
	for _, t := range r.tables {
		nt := schema.Table(t.Name)
		if nt == nil || len(nt.Columns) != len(t.Columns) {
			return false
		}
	}
	return true
}

// project returns a copy of t with only the columns of nt (which names
// none t lacks), its foreign keys and unique sets over them.
func (t *Table) project(nt *protocol.SchemaTable) *Table {
	p := *t
	p.Columns = nil
	p.byName = map[string]*Column{}
	codecs := make([]*rowcodec.Column, 0, len(nt.Columns))
	for _, c := range t.Columns {
		if nt.Column(c.Name) == nil {
			continue
		}
		codec, err := rowcodec.NewColumn(c.field, len(p.Columns))
		if err != nil { // Track built the same column
			panic(fmt.Sprintf("dbsync: column %s.%s: %v", t.Name, c.Name, err))
		}
		pc := &Column{Name: c.Name, field: c.field, codec: codec}
		p.Columns = append(p.Columns, pc)
		p.byName[pc.Name] = pc
		codecs = append(codecs, codec)
	}
	p.PK = p.byName[t.PK.Name]
	p.codec = rowcodec.NewTable(t.Name, t.schema.Type, codecs, p.PK.Name)
	p.ForeignKeys = nil
	for _, fk := range t.ForeignKeys {
		if p.byName[fk.Column] != nil {
			p.ForeignKeys = append(p.ForeignKeys, fk)
		}
	}
	p.Uniques = nil
	for _, u := range t.Uniques {
		known := true
		for _, c := range u {
			known = known && p.byName[c] != nil
		}
		if known {
			p.Uniques = append(p.Uniques, u)
		}
	}
	return &p
}

func keyText(name string, kind protocol.KeyKind) string {
	k := "text"
	switch kind {
	case protocol.KeyInt:
		k = "integer"
	case protocol.KeyUUID:
		k = "uuid"
	}
	return name + " (" + k + ")"
}
