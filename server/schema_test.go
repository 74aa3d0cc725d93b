package server_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// ForSchema reads the two schema headers: a node of the server's schema is
// served by the server itself, with or without its announcement; a node
// that announces less gets a view of what it knows; a bare fingerprint of
// another schema, an announcement that is not one, or one that the
// fingerprint does not match is refused.
func TestForSchema(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewLocalServer(t, kind, nil).Srv
			own := srv.Registry().NodeSchema()
			older := srv.Registry().NodeSchema()
			older.Tables = slices.DeleteFunc(older.Tables, func(t protocol.SchemaTable) bool { return t.Name == "notes" })
			cases := []struct {
				name, fingerprint, announced string
				view                         bool
				err                          error
			}{
				{name: "own fingerprint", fingerprint: own.Fingerprint()},
				{name: "own schema", fingerprint: own.Fingerprint(), announced: own.String()},
				{name: "older schema", fingerprint: older.Fingerprint(), announced: older.String(), view: true},
				{name: "older schema, no fingerprint", announced: older.String(), view: true},
				{name: "other fingerprint alone", fingerprint: older.Fingerprint(), err: dbsync.ErrSchemaMismatch},
				{name: "fingerprint of another schema", fingerprint: own.Fingerprint() + "0", announced: older.String(), err: dbsync.ErrBadRequest},
				{name: "not a schema", fingerprint: "x", announced: "1;todos", err: dbsync.ErrBadRequest},
			}
			for _, tc := range cases {
				got, err := srv.ForSchema(tc.fingerprint, tc.announced)
				switch {
				case tc.err != nil:
					if !errors.Is(err, tc.err) {
						t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
					}
				case err != nil:
					t.Errorf("%s: %v", tc.name, err)
				case (got != srv) != tc.view:
					t.Errorf("%s: served by a view: %v, want %v", tc.name, got != srv, tc.view)
				case tc.view && (got.Registry().Table("notes") != nil || got.Registry().Table("todos") == nil):
					t.Errorf("%s: the view tracks %v", tc.name, got.Registry().Tables())
				}
			}
			// A view is made once per schema.
			a, _ := srv.ForSchema("", older.String())
			b, _ := srv.ForSchema("", older.String())
			if a != b {
				t.Error("two views of one schema")
			}
		})
	}
}
