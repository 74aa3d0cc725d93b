package handlers_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestSchemaAnnouncementAfterAuth: before a request's signature holds, its
// schema headers are only looked up among the schemas served already: a
// bad signature with a new announcement, even one that does not parse,
// is answered 401 and builds no view; the same announcement, signed,
// builds one. A bare fingerprint not the server's is still refused before
// the signature.
func TestSchemaAnnouncementAfterAuth(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, nil)
			older := e.s.Srv.Registry().NodeSchema()
			older.Tables = slices.DeleteFunc(older.Tables, func(t protocol.SchemaTable) bool { return t.Name == "notes" })
			announce := func(fingerprint, tables string) opt {
				return withHeader(func(h http.Header) {
					h.Set(protocol.HeaderSchema, fingerprint)
					h.Set(protocol.HeaderTables, tables)
				})
			}
			garbage := strings.Repeat("x", protocol.MaxSchemaBytes)
			cases := []struct {
				name                string
				opts                []opt
				status              int
				code                string
				fingerprint, tables string
				view                bool // a view of the schema is held afterwards
			}{
				{name: "bad signature, new schema", opts: []opt{withSecret("wrong")}, status: 401, code: protocol.CodeUnauthorized,
					fingerprint: older.Fingerprint(), tables: older.String()},
				{name: "bad signature, not a schema", opts: []opt{withSecret("wrong")}, status: 401, code: protocol.CodeUnauthorized,
					fingerprint: "x", tables: garbage},
				{name: "unsigned, new schema", opts: []opt{unsigned()}, status: 401, code: protocol.CodeUnauthorized,
					fingerprint: older.Fingerprint(), tables: older.String()},
				{name: "unsigned, bare other fingerprint", opts: []opt{unsigned()}, status: 409, code: protocol.CodeSchemaMismatch,
					fingerprint: older.Fingerprint()},
				{name: "signed, not a schema", status: 400, code: protocol.CodeBadRequest, fingerprint: "x", tables: garbage},
				{name: "signed, new schema", status: 200, fingerprint: older.Fingerprint(), tables: older.String(), view: true},
				{name: "bad signature, known schema", opts: []opt{withSecret("wrong")}, status: 401, code: protocol.CodeUnauthorized,
					fingerprint: older.Fingerprint(), tables: older.String(), view: true},
			}
			for _, c := range cases {
				opts := append([]opt{announce(c.fingerprint, c.tables)}, c.opts...)
				status, raw, d := e.do(e.request(http.MethodGet, "query", "table=lists", nil, opts...))
				if status != c.status || d.Code != c.code {
					t.Fatalf("%s: %d %s, want %d %s", c.name, status, raw, c.status, c.code)
				}
				if c.tables == "" {
					continue
				}
				v, err := e.s.Srv.LookupSchema(c.fingerprint, c.tables)
				if err != nil || (v != nil) != c.view {
					t.Fatalf("%s: a view is held: %v (%v), want %v", c.name, v != nil, err, c.view)
				}
			}

			// A schema with 100 columns the server lacks: the answer lists
			// dbsync.MaxSchemaDifferences of them, schema_more the others.
			newer := e.s.Srv.Registry().NodeSchema()
			lists := newer.Table("lists")
			for i := range 100 {
				lists.Columns = append(lists.Columns, protocol.SchemaColumn{Name: "extra" + strconv.Itoa(i), Class: lists.Column("name").Class})
			}
			newer.Normalize()
			status, raw, d := e.do(e.request(http.MethodGet, "query", "table=lists", nil, announce(newer.Fingerprint(), newer.String())))
			if status != http.StatusConflict || len(d.Schema) != dbsync.MaxSchemaDifferences || d.SchemaMore != 100-dbsync.MaxSchemaDifferences {
				t.Fatalf("100 unknown columns: %d %.300s, want 409 listing %d and schema_more %d", status, raw, dbsync.MaxSchemaDifferences, 100-dbsync.MaxSchemaDifferences)
			}
		})
	}
}
