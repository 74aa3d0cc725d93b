package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
)

// lwwDoc carries its own write clock: Unix nanoseconds (an int64), as
// applications stamp rows for merge.LastWriteWins.
type lwwDoc struct {
	bun.BaseModel `bun:"table:lww_docs"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Body          string `bun:"body,notnull"`
	UpdatedNS     int64  `bun:"updated_ns,notnull"`
}

func lwwModels() []any { return []any{(*lwwDoc)(nil)} }

func lwwCreate(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*lwwDoc)(nil)).IfNotExists().Exec(ctx)
	return err
}

// TestLastWriteWinsLargeIntegers: merge.md P4 says the later value of the
// column wins. With an int64 clock above 2^53 (Unix nanoseconds), two
// values 1 ns apart compared equal (parsed as float64), the "tie" took
// remote, and the later local write was dropped.
func TestLastWriteWinsLargeIntegers(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "lww", lwwCreate, lwwModels()), lwwCreate, lwwModels(), nil)
			cfg := &client.Config{Policies: map[string]merge.Policy{"lww_docs": merge.LastWriteWins("updated_ns")}}
			newC := func(name string) *synctest.Client {
				return synctest.NewClientWith(t, srv, name, synctest.ClientDB(t, dbtest.KindSQLite, "lww", lwwCreate, lwwModels()), lwwCreate, lwwModels(), cfg)
			}
			a, b := newC("a"), newC("b")
			exec := func(c *synctest.Client, q string) {
				t.Helper()
				if _, err := c.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			sync := func(c *synctest.Client) {
				t.Helper()
				if _, err := c.Sync(ctx); err != nil {
					t.Fatalf("%s sync: %v", c.Name, err)
				}
			}
			const t0 = int64(1_733_000_000_000_000_000)
			exec(a, fmt.Sprintf("INSERT INTO lww_docs (id, body, updated_ns) VALUES (1, 'v0', %d)", t0))
			sync(a)
			sync(b)
			// b writes, then a 100 ns later, both offline; b syncs first.
			exec(b, fmt.Sprintf("UPDATE lww_docs SET body = 'from b', updated_ns = %d WHERE id = 1", t0+1000))
			exec(a, fmt.Sprintf("UPDATE lww_docs SET body = 'from a (later)', updated_ns = %d WHERE id = 1", t0+1100))
			sync(b)
			sync(a)
			sync(b)
			var body string
			if err := srv.DB.NewRaw("SELECT body FROM lww_docs WHERE id = 1").Scan(ctx, &body); err != nil {
				t.Fatal(err)
			}
			if body != "from a (later)" {
				t.Errorf("server holds %q; the later write (a's, 100 ns later) was dropped", body)
			}
		})
	}
}
