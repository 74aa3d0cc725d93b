package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// boundParent has long text keys; boundChild makes it a referenced table,
// whose pending deletes a pull lists.
type boundParent struct {
	bun.BaseModel `bun:"table:bparents"`

	ID string `bun:"id,pk"`
}

type boundChild struct {
	bun.BaseModel `bun:"table:bchildren"`

	ID       string       `bun:"id,pk"`
	ParentID string       `bun:"parent_id,notnull"`
	Parent   *boundParent `bun:"rel:belongs-to,join:parent_id=id"`
}

// TestPullBodyUnscoped: a node whose pending deletes of referenced rows
// have long keys (40 of 30 KB) pulls from a server without scopes, which
// bounds pull bodies to 1 MiB: the client sends no pull body over 1 MiB
// (it asks for every referenced row instead of listing the keys), and
// the pull succeeds. Nodes on both databases.
func TestPullBodyUnscoped(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*boundParent)(nil), (*boundChild)(nil)}
			schema := synctest.CreateTables(models...)
			srv := synctest.NewServerWith(t, dbtest.Open(t, dbtest.KindSQLite), schema, models, nil)
			tr := &transport{}
			a := synctest.NewClientWith(t, srv, "a", dbtest.Open(t, kind), schema, models, &client.Config{HTTPClient: tr.client()})
			rows := make([]boundParent, 40)
			for i := range rows {
				rows[i].ID = fmt.Sprintf("%04d", i) + strings.Repeat("k", 30000)
			}
			// Rows the node holds and pushed long ago (their log is gone:
			// syncing 1.2 MB of keys takes seconds under -race).
			if _, err := a.DB.NewInsert().Model(&rows).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			exec(t, a.DB, "DELETE FROM sync_operations")
			exec(t, a.DB, "DELETE FROM bparents")
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("pull with 40 long pending deletes: %v", err)
			}
			pulls := tr.requests("pull")
			if len(pulls) == 0 {
				t.Fatal("no pull sent")
			}
			for _, r := range pulls {
				if len(r.body) > 1<<20 {
					t.Fatalf("a pull body of %d bytes, over the 1 MiB of a server without scopes", len(r.body))
				}
			}
		})
	}
}
