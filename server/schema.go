package server

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// maxViews bounds the views ForSchema keeps, the least recently used
// dropped first: the schemas of the releases in the field are few.
const maxViews = 64

// LookupSchema is the cheap part of ForSchema, for a request not yet
// authenticated: it returns the server as it serves a node with the
// given schema headers when that needs no new view (the server's own
// schema, or a view ForSchema built already), and nil when ForSchema must
// build one, to be called once the request is authenticated. It parses
// nothing: an unauthenticated request costs a hash of its headers. A bare
// fingerprint that is not the server's is refused as ForSchema refuses
// it.
func (s *Server) LookupSchema(fingerprint, announced string) (*Server, error) {
	if announced == "" {
		if fingerprint != s.fingerprint {
			return nil, fmt.Errorf("%w: the node tracks other tables or columns than the server and does not announce them (fingerprint %q, server %q)",
				dbsync.ErrSchemaMismatch, fingerprint, s.fingerprint)
		}
		return s, nil
	}
	if fingerprint == s.fingerprint {
		// Both headers name the same schema: the server's. (Checked
		// against the announcement by ForSchema otherwise.)
		return s, nil
	}
	return s.views.get(viewKey(fingerprint, announced)), nil
}

// ForSchema returns the server as it serves a node with the given schema
// (docs/protocol.md "Schema changes"): fingerprint is Registry.Fingerprint of the
// node's registry (header X-Dbsync-Schema), announced the text form of its
// protocol.NodeSchema (header X-Dbsync-Tables; "" for a node that sends
// only the fingerprint).
//
// A node with the server's own schema is served by s itself. A node whose
// schema lacks tables or columns the server has — an older release of the
// application, after the server's additive migration — is served by a view
// of s whose registry (Registry) holds only what the node knows: its pulls,
// repairs and queries leave the other tables and columns out, and its
// pushes write only the columns it knows (an insert leaves the others to
// their defaults, an update leaves them as they are). Any other difference
// is refused with a *dbsync.SchemaError (wrapping dbsync.ErrSchemaMismatch)
// that names each (at most dbsync.MaxSchemaDifferences, and how many more):
// a table or column the server lacks, a different key or
// type class, a column the server requires (NOT NULL without a default)
// in a table the node pushes. Without an announcement, the fingerprint
// must be the server's.
//
// Building a view parses the announcement (up to
// protocol.MaxSchemaBytes): call it for authenticated requests only, and
// LookupSchema before. The last maxViews views built are kept.
func (s *Server) ForSchema(fingerprint, announced string) (*Server, error) {
	if v, err := s.LookupSchema(fingerprint, announced); v != nil || err != nil {
		return v, err
	}
	schema, err := protocol.ParseNodeSchema(announced)
	if err != nil {
		return nil, err
	}
	if fingerprint != "" && schema.Fingerprint() != fingerprint {
		return nil, fmt.Errorf("%w: %s %q is not the fingerprint of the schema in %s", dbsync.ErrBadRequest,
			protocol.HeaderSchema, fingerprint, protocol.HeaderTables)
	}
	view, err := s.full.Project(schema)
	var se *dbsync.SchemaError
	if err != nil && !errors.As(err, &se) {
		return nil, err
	}
	if se == nil {
		se = &dbsync.SchemaError{}
	}
	for _, nt := range schema.Tables {
		t := s.full.Table(nt.Name)
		if t == nil || !t.Direction.Pushed() {
			continue
		}
		for _, col := range s.required[nt.Name] {
			if nt.Column(col) == nil {
				se.Add(protocol.SchemaDifference{Table: nt.Name, Column: col,
					Server:  t.Column(col).Class(),
					Problem: "the server requires this column (NOT NULL without a default) and the node, which pushes the table, does not know it"})
			}
		}
	}
	if len(se.Differences) > 0 {
		return nil, se
	}
	out := *s
	out.reg, out.served = view, view.Fingerprint()
	served := protocol.Nullable{}
	for _, t := range view.Tables() {
		for _, c := range t.Columns {
			if notNull, ok := s.nullable[t.Name][c.Name]; ok {
				if served[t.Name] == nil {
					served[t.Name] = map[string]bool{}
				}
				served[t.Name][c.Name] = notNull
			}
		}
	}
	out.nullableText = served.String()
	return s.views.put(viewKey(fingerprint, announced), &out), nil
}

// CheckNullable compares the nullability of a node's columns (text: the
// header X-Dbsync-Nullable, protocol.Nullable) with the server's, over the
// tables and columns s serves the node (s is the server or the view
// ForSchema returned; call it once the request is authenticated). It
// refuses, with a *dbsync.SchemaError naming each table and column
// (wrapping dbsync.ErrSchemaMismatch), what would fail at apply time: a
// column of a table the node pulls that can hold NULL here (a field that
// can be nil over a nullable column) where the node's field can be nil
// and its column is NOT NULL, and a column of a table the node pushes
// that can hold NULL on the node where the server's field can be nil and
// its column is NOT NULL. A field that cannot be nil reads a NULL as its
// zero value on either side, and is not compared. A node that sends no
// header ("": a release before it) is not checked; a malformed one wraps
// dbsync.ErrBadRequest.
func (s *Server) CheckNullable(text string) error {
	if text == "" || text == s.nullableText {
		return nil
	}
	node, err := protocol.ParseNullable(text)
	if err != nil {
		return err
	}
	se := &dbsync.SchemaError{}
	for _, t := range s.reg.Tables() {
		for _, c := range t.Columns {
			if c == t.PK {
				continue
			}
			hereNotNull, here := s.nullable[t.Name][c.Name]
			thereNotNull, there := node[t.Name][c.Name]
			if !here || !there || hereNotNull == thereNotNull {
				continue
			}
			switch {
			case thereNotNull && t.Direction.Pulled():
				se.Add(protocol.SchemaDifference{Table: t.Name, Column: c.Name, Node: "not null", Server: "nullable",
					Problem: "the server's column can hold NULL and the node's is NOT NULL: a NULL a pull brings would fail there"})
			case hereNotNull && t.Direction.Pushed():
				se.Add(protocol.SchemaDifference{Table: t.Name, Column: c.Name, Node: "nullable", Server: "not null",
					Problem: "the node's column can hold NULL and the server's is NOT NULL: a NULL the node pushes would be refused"})
			}
		}
	}
	if len(se.Differences) > 0 {
		return se
	}
	return nil
}

// viewKey is the key of the view of a node's schema headers.
func viewKey(fingerprint, announced string) [sha256.Size]byte {
	return sha256.Sum256([]byte(fingerprint + "\n" + announced))
}

// viewCache holds the views ForSchema built, the last maxViews used. The
// zero value is empty and ready.
type viewCache struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*list.Element // of *viewEntry
	order list.List                           // most recently used first
}

type viewEntry struct {
	key  [sha256.Size]byte
	view *Server
}

// get returns the view of key, nil if none, and marks it used.
func (c *viewCache) get(key [sha256.Size]byte) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[key]
	if e == nil {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*viewEntry).view
}

// put keeps v as the view of key, dropping the least recently used beyond
// maxViews, and returns the view kept (one another request built first,
// if any).
func (c *viewCache) put(key [sha256.Size]byte, v *Server) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[key]; e != nil {
		c.order.MoveToFront(e)
		return e.Value.(*viewEntry).view
	}
	if c.byKey == nil {
		c.byKey = map[[sha256.Size]byte]*list.Element{}
	}
	c.byKey[key] = c.order.PushFront(&viewEntry{key: key, view: v})
	for c.order.Len() > maxViews {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*viewEntry).key)
	}
	return v
}

// requiredColumns reads, for each pushed table of reg, the columns that
// are NOT NULL without a default, besides the primary key.
func requiredColumns(ctx context.Context, db bun.IDB, reg *dbsync.Registry) (map[string][]string, error) {
	out := map[string][]string{}
	for _, t := range reg.Tables() {
		if !t.Direction.Pushed() {
			continue
		}
		info, err := dialect.Columns(ctx, db, t.Name)
		if err != nil {
			return nil, err
		}
		for _, c := range t.Columns {
			if ci, ok := info[c.Name]; ok && c != t.PK && ci.NotNull && !ci.HasDefault {
				out[t.Name] = append(out[t.Name], c.Name)
			}
		}
	}
	return out, nil
}

// backfillTables reads a pull's backfill request (PullRequest.Backfill):
// the tables and columns to send, as the registry of the node's view
// projected on them; nil for none. It must name only pulled tables and
// columns the node announces.
func (s *Server) backfillTables(text string) (*dbsync.Registry, error) {
	if text == "" {
		return nil, nil
	}
	want, err := protocol.ParseNodeSchema(text)
	if err != nil {
		return nil, err
	}
	for _, nt := range want.Tables {
		if t := s.reg.Table(nt.Name); t != nil && !t.Direction.Pulled() {
			return nil, fmt.Errorf("%w: backfill of %s, which nodes do not pull", dbsync.ErrBadRequest, nt.Name)
		}
	}
	reg, err := s.reg.Project(want)
	if err != nil {
		return nil, fmt.Errorf("%w: backfill of tables or columns the node does not announce: %w", dbsync.ErrBadRequest, err)
	}
	return reg, nil
}

// backfill streams, for a pull that asked for it, the backfill lines: the
// rows of each table of reg (in dependency order) the node may read, with
// only reg's columns, at most chunk rows a line, from the pull's snapshot.
// Each line carries as payload the rows its rows reference through those
// columns that the node deleted (wanted, as a chunk's; nil: every one),
// which the node restores (merge.md D2): its rows and their parents
// within the line budget, as a chunk's (fitLine). It returns the number
// of rows sent.
func (s *Server) backfill(ctx context.Context, tx bun.Tx, node int64, reg *dbsync.Registry, wanted map[string]map[string]bool, chunk int, emit Emit) (int64, error) {
	if reg == nil {
		return 0, nil
	}
	var total int64
	for _, t := range reg.Tables() {
		// reg's tables keep only the references among reg's tables: the
		// node's view has them all.
		var fks []protocol.ForeignKey
		for _, fk := range s.reg.Table(t.Name).ForeignKeys {
			if t.Column(fk.Column) != nil {
				fks = append(fks, fk)
			}
		}
		parents := func(rows []reflect.Value, raws []json.RawMessage) (protocol.Payload, int, error) {
			if len(fks) == 0 {
				return nil, len(rows), nil
			}
			b, n, err := s.fitLine(ctx, tx, wanted, len(rows), func(b *payloadBuilder, n int) int {
				size := 0
				for i := range n {
					b.refs(t, fks, rows[i])
					size += len(raws[i])
				}
				return size
			})
			if err != nil || b.n == 0 {
				return nil, n, err
			}
			return b.payload, n, nil
		}
		n, err := s.streamRowsWith(ctx, tx, node, t, chunk, protocol.MsgBackfill, parents, emit)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
