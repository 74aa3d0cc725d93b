package peer_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestReplicaRoleReachesPeers: a PostgreSQL node's writes under
// session_replication_role = replica (pg_restore, replication tools skip
// ordinary triggers so) are versioned and reach its peers: dbsync's
// triggers fire ALWAYS.
func TestReplicaRoleReachesPeers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, stmt string }{
		{"Insert", "INSERT INTO lists (name) VALUES ('shop')"},
		{"Update", "UPDATE lists SET name = 'house' WHERE name = 'home'"},
		{"Delete", "DELETE FROM lists WHERE name = 'work'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindPostgres, nil), newNode(t, dbtest.KindSQLite, nil)
			exec(t, a, "INSERT INTO lists (name) VALUES ('home'), ('work')")
			mustSync(t, a, b.AsPeer())
			err := a.DB().RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.ExecContext(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, tc.stmt)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			mustSync(t, a, b.AsPeer())
			sameLive(t, a, b)
		})
	}
}
