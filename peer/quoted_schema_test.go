package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestQuotedSchemaPeer: two PostgreSQL peer nodes in schemas that only
// quoted identifiers spell (capitals and a space) install, write, sync and
// converge, and a node starts again on an installed one.
func TestQuotedSchemaPeer(t *testing.T) {
	t.Parallel()
	a := nodeOn(t, dbtest.PostgresQuotedSchema(t), nil)
	b := nodeOn(t, dbtest.PostgresQuotedSchema(t), nil)
	insert(t, a, &testmodels.List{Name: "home"})
	insert(t, a, newNote("hello"))
	mustSync(t, a, b.AsPeer())
	exec(t, b, "UPDATE notes SET body = 'bye'")
	exec(t, b, "DELETE FROM lists")
	mustSync(t, b, a.AsPeer())
	mustSync(t, a, b.AsPeer())
	sameLive(t, a, b)
	sameDigests(t, a, b)
	nodeOn(t, a.DB(), nil)
}
