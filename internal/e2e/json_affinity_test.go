package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestJSONNumberInNumericColumn: SQLite stores a JSON number written into
// a column of numeric affinity (the test models' notes.meta, declared
// jsonb) as a number, not as the text written; dbsync reads it back as
// the number's JSON text, so the row still syncs and the server's query
// answers. Before, one push of such a row to a SQLite server made every
// query of the table fail with 500 and every node's pull of it fail (bun
// cannot scan a number into a json.RawMessage), and a SQLite node could
// no longer push the table.
func TestJSONNumberInNumericColumn(t *testing.T) {
	t.Parallel()
	for _, kinds := range [][2]string{{dbtest.KindSQLite, dbtest.KindSQLite}, {dbtest.KindPostgres, dbtest.KindSQLite}, {dbtest.KindSQLite, dbtest.KindPostgres}} {
		t.Run(kinds[0]+"-server/"+kinds[1]+"-nodes", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewServer(t, kinds[0], nil)
			node := func(name string) *synctest.Client {
				if kinds[1] == dbtest.KindSQLite {
					return synctest.NewClient(t, s, name, nil)
				}
				return synctest.NewClientWith(t, s, name, synctest.ClientOn(t, kinds[1], testmodels.CreateSchema, synctest.Models()), testmodels.CreateSchema, synctest.Models(), nil)
			}
			a, b := node("a"), node("b")
			metas := []string{`1.5`, `2`, `-7`, `1e3`, `{"n":1}`, `"12"`}
			ids := make([]uuid.UUID, len(metas))
			for i, m := range metas {
				ids[i] = uuid.New()
				n := &testmodels.Note{ID: ids[i], Body: fmt.Sprint("note ", i), Created: time.Now().UTC().Truncate(time.Microsecond), Meta: json.RawMessage(m)}
				if _, err := a.DB.NewInsert().Model(n).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			mustSync(t, a)
			mustSync(t, b)
			if _, err := b.Query(ctx, &protocol.QueryRequest{Table: "notes"}); err != nil {
				t.Fatalf("query of the notes: %v", err)
			}
			for i, m := range metas {
				// As text: the application's own bun reads on a SQLite
				// node meet the number too (declare such a column TEXT
				// there).
				var meta string
				if err := b.DB.NewRaw("SELECT CAST(meta AS TEXT) FROM notes WHERE id = ?", ids[i]).Scan(ctx, &meta); err != nil {
					t.Fatalf("b reads note %d: %v", i, err)
				}
				var want, have any
				if err := json.Unmarshal([]byte(m), &want); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal([]byte(meta), &have); err != nil {
					t.Fatalf("note %d's meta on b, %s: %v", i, meta, err)
				}
				if fmt.Sprint(want) != fmt.Sprint(have) {
					t.Errorf("note %d's meta: b reads %s, a wrote %s", i, meta, m)
				}
			}
		})
	}
}
