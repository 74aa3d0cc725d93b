package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// NodeSchema is the schema a node announces with every request (header
// X-Dbsync-Tables, docs/protocol.md "Schema"): per tracked table, its key
// kind, its primary key and its columns with their type classes (what
// dbsync.Registry.Fingerprint summarizes). A server serves a node whose
// schema lacks tables or columns it has (an older application release):
// the node reads and writes only what it announces.
//
// Its text form is
//
//	1;<table>;<table>…
//	<table> = <name>:<kind>:<key>=<class>,<column>=<class>,…
//
// with tables sorted by name, the primary key first and the other columns
// sorted by name; kind is i (integer), u (UUID) or t (text); a class is
// one of int, float, bool, string, time, uuid, bytes, json, other. Names
// are percent-encoded outside [A-Za-z0-9_]. For example
// "1;todos:u:id=uuid,done=bool,title=string".
type NodeSchema struct {
	Tables []SchemaTable
}

// SchemaTable is one table of a [NodeSchema].
type SchemaTable struct {
	Name    string
	KeyKind KeyKind
	// Columns are the table's columns, the primary key first.
	Columns []SchemaColumn
}

// SchemaColumn is a column and its type class.
type SchemaColumn struct {
	Name  string
	Class string
}

// Key returns the name of the table's primary key column.
func (t *SchemaTable) Key() string {
	if len(t.Columns) == 0 {
		return ""
	}
	return t.Columns[0].Name
}

// Column returns the column named name, or nil.
func (t *SchemaTable) Column(name string) *SchemaColumn {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// Table returns the table named name, or nil.
func (s *NodeSchema) Table(name string) *SchemaTable {
	for i := range s.Tables {
		if s.Tables[i].Name == name {
			return &s.Tables[i]
		}
	}
	return nil
}

// Normalize sorts the tables by name and each table's columns by name,
// its primary key first: the order of the text form.
func (s *NodeSchema) Normalize() {
	sort.Slice(s.Tables, func(i, j int) bool { return s.Tables[i].Name < s.Tables[j].Name })
	for i := range s.Tables {
		cols := s.Tables[i].Columns
		if len(cols) > 1 {
			rest := cols[1:]
			sort.Slice(rest, func(i, j int) bool { return rest[i].Name < rest[j].Name })
		}
	}
}

// schemaVersion is the first field of the text form.
const schemaVersion = "1"

// String returns the text form of a normalized schema.
func (s *NodeSchema) String() string {
	var b strings.Builder
	b.WriteString(schemaVersion)
	for _, t := range s.Tables {
		b.WriteByte(';')
		b.WriteString(escapeName(t.Name))
		b.WriteByte(':')
		b.WriteByte(kindLetter(t.KeyKind))
		b.WriteByte(':')
		for i, c := range t.Columns {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(escapeName(c.Name))
			b.WriteByte('=')
			b.WriteString(c.Class)
		}
	}
	return b.String()
}

// Fingerprint returns the schema's fingerprint: the first 16 bytes, in
// hex, of the SHA-256 of its tables (by name) with their key kind and key,
// each followed by its columns with their classes (by name). Older nodes
// send only this, in X-Dbsync-Schema.
func (s *NodeSchema) Fingerprint() string {
	h := sha256.New()
	tables := make([]*SchemaTable, len(s.Tables))
	for i := range s.Tables {
		tables[i] = &s.Tables[i]
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].Name < tables[j].Name })
	for _, t := range tables {
		fmt.Fprintf(h, "table %s %d %s\n", t.Name, t.KeyKind, t.Key())
		cols := make([]string, 0, len(t.Columns))
		for _, c := range t.Columns {
			cols = append(cols, c.Name+" "+c.Class)
		}
		sort.Strings(cols)
		for _, c := range cols {
			fmt.Fprintf(h, "  %s\n", c)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// MaxSchemaBytes bounds the text form ParseNodeSchema accepts.
const MaxSchemaBytes = 32 << 10

// ParseNodeSchema reads the text form of a schema (see [NodeSchema]). Text
// that is not one is an error wrapping dbsync.ErrBadRequest; a table or a
// column named twice, a table without columns, or columns out of order
// are refused as well, so that one schema has one text form.
func ParseNodeSchema(text string) (*NodeSchema, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schema announcement: %s", wire.ErrBadRequest, fmt.Sprintf(format, args...))
	}
	if len(text) > MaxSchemaBytes {
		return nil, bad("longer than %d bytes", MaxSchemaBytes)
	}
	parts := strings.Split(text, ";")
	if parts[0] != schemaVersion {
		return nil, bad("version %q, want %s", parts[0], schemaVersion)
	}
	s := &NodeSchema{Tables: make([]SchemaTable, 0, len(parts)-1)}
	for _, p := range parts[1:] {
		fields := strings.SplitN(p, ":", 3)
		if len(fields) != 3 {
			return nil, bad("table %q is not name:kind:columns", p)
		}
		name, err := unescapeName(fields[0])
		if err != nil {
			return nil, bad("table name %q: %v", fields[0], err)
		}
		kind, ok := letterKind(fields[1])
		if !ok {
			return nil, bad("table %s: key kind %q, want i, u or t", name, fields[1])
		}
		if n := len(s.Tables); n > 0 && s.Tables[n-1].Name >= name {
			return nil, bad("table %s: tables must be sorted by name, each once", name)
		}
		t := SchemaTable{Name: name, KeyKind: kind}
		for i, c := range strings.Split(fields[2], ",") {
			cn, class, ok := strings.Cut(c, "=")
			if !ok || !validClass(class) {
				return nil, bad("table %s: column %q is not name=class", name, c)
			}
			col, err := unescapeName(cn)
			if err != nil {
				return nil, bad("table %s: column name %q: %v", name, cn, err)
			}
			if i > 1 && t.Columns[i-1].Name >= col {
				return nil, bad("table %s: column %s: columns after the key must be sorted by name, each once", name, col)
			}
			if i > 0 && col == t.Columns[0].Name {
				return nil, bad("table %s: column %s named twice", name, col)
			}
			t.Columns = append(t.Columns, SchemaColumn{Name: col, Class: class})
		}
		s.Tables = append(s.Tables, t)
	}
	return s, nil
}

func validClass(class string) bool {
	if class == "" || len(class) > 32 {
		return false
	}
	for i := 0; i < len(class); i++ {
		if c := class[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func kindLetter(k KeyKind) byte {
	switch k {
	case KeyInt:
		return 'i'
	case KeyUUID:
		return 'u'
	default:
		return 't'
	}
}

func letterKind(s string) (KeyKind, bool) {
	switch s {
	case "i":
		return KeyInt, true
	case "u":
		return KeyUUID, true
	case "t":
		return KeyText, true
	}
	return 0, false
}

func plainNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

const hexDigits = "0123456789ABCDEF"

func escapeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plainNameByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func unescapeName(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case plainNameByte(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s):
			hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
			if hi < 0 || lo < 0 || plainNameByte(byte(hi<<4|lo)) {
				return "", fmt.Errorf("bad escape %q", s[i:i+3])
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		default:
			return "", fmt.Errorf("byte %q must be percent-encoded", c)
		}
	}
	return b.String(), nil
}

// SchemaDifference names one way a node's schema and the server's differ
// that the server cannot serve (docs/protocol.md "Schema changes"): Column is
// empty when the difference is the table's, and Node and Server say what
// each side has (a class, a key, or "" for nothing).
type SchemaDifference struct {
	Table   string `json:"table"`
	Column  string `json:"column,omitempty"`
	Node    string `json:"node,omitempty"`
	Server  string `json:"server,omitempty"`
	Problem string `json:"problem"`
}

// String describes the difference for people.
func (d SchemaDifference) String() string {
	where := d.Table
	if d.Column != "" {
		where += "." + d.Column
	}
	s := where + ": " + d.Problem
	if d.Node != "" || d.Server != "" {
		s += fmt.Sprintf(" (node %s, server %s)", orNone(d.Node), orNone(d.Server))
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Nullable lists, by table, the columns of a side's tracked tables whose
// model field can be nil (a pointer, a database/sql null type, a []byte,
// a json.RawMessage, a type bun writes NULL when zero such as
// bun.NullTime: the only fields that carry null and write NULL), each with whether its database
// column is NOT NULL (true). Such a column can hold NULL when it is not
// NOT NULL; with NOT NULL, writing a NULL into it fails. Other fields read
// a NULL as their zero value. A node sends it in header X-Dbsync-Nullable
// (docs/protocol.md "Schema changes"); the server compares it with its
// own.
//
// Its text form is
//
//	1;<table>:<column>,<column>!,…;<table>:…
//
// tables and columns sorted by name, a column NOT NULL followed by "!",
// names percent-encoded as in the [NodeSchema] text form, tables without
// such columns left out ("1" for none).
type Nullable map[string]map[string]bool

// String returns the text form of n.
func (n Nullable) String() string {
	tables := make([]string, 0, len(n))
	for t, cols := range n {
		if len(cols) > 0 {
			tables = append(tables, t)
		}
	}
	sort.Strings(tables)
	var b strings.Builder
	b.WriteString(schemaVersion)
	for _, t := range tables {
		cols := make([]string, 0, len(n[t]))
		for c, notNull := range n[t] {
			name := escapeName(c)
			if notNull {
				name += "!"
			}
			cols = append(cols, name)
		}
		sort.Strings(cols)
		b.WriteByte(';')
		b.WriteString(escapeName(t))
		b.WriteByte(':')
		b.WriteString(strings.Join(cols, ","))
	}
	return b.String()
}

// ParseNullable reads the text form of a [Nullable]. Text that is not one
// (up to MaxSchemaBytes) is an error wrapping dbsync.ErrBadRequest; a
// table or column named twice, or tables or columns out of order, are
// refused as well, so that one nullability has one text form.
func ParseNullable(text string) (Nullable, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", wire.ErrBadRequest, HeaderNullable, fmt.Sprintf(format, args...))
	}
	if len(text) > MaxSchemaBytes {
		return nil, bad("longer than %d bytes", MaxSchemaBytes)
	}
	parts := strings.Split(text, ";")
	if parts[0] != schemaVersion {
		return nil, bad("version %q, want %s", parts[0], schemaVersion)
	}
	n := Nullable{}
	for _, p := range parts[1:] {
		tn, cols, ok := strings.Cut(p, ":")
		if !ok || cols == "" {
			return nil, bad("table %q is not name:columns", p)
		}
		table, err := unescapeName(tn)
		if err != nil {
			return nil, bad("table name %q: %v", tn, err)
		}
		if n[table] != nil {
			return nil, bad("table %s named twice", table)
		}
		n[table] = map[string]bool{}
		for _, cn := range strings.Split(cols, ",") {
			name, notNull := strings.CutSuffix(cn, "!")
			col, err := unescapeName(name)
			if err != nil {
				return nil, bad("table %s: column name %q: %v", table, cn, err)
			}
			if _, twice := n[table][col]; twice {
				return nil, bad("table %s: column %s named twice", table, col)
			}
			n[table][col] = notNull
		}
	}
	// One nullability, one text form (as for a schema announcement): the
	// tables and columns in the order String writes them.
	if canon := n.String(); canon != text {
		return nil, bad("not in its one form (tables sorted by name, then each table's columns as written, each once): want %q", canon)
	}
	return n, nil
}
