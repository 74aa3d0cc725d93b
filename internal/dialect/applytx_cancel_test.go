package dialect_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestApplyTxCanceledKeepsForeignKeys: an ApplyTx whose ctx is canceled
// while it runs (a sync given up, a request gone) hands no connection
// back to the pool with foreign key enforcement off. On SQLite ApplyTx
// switches enforcement off on its connection and back on after; the
// pragma is a no-op within a transaction, and database/sql rolls a
// canceled transaction back apart, so that before, a connection came
// back with enforcement off and the application's later writes on it
// broke references (an ON DELETE CASCADE not run, a child of a missing
// parent accepted), which a peer node then sent on as rows its peers
// refused.
func TestApplyTxCanceledKeepsForeignKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		for _, q := range []string{
			"CREATE TABLE fk_parents (id BIGINT PRIMARY KEY)",
			"CREATE TABLE fk_children (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES fk_parents (id) ON DELETE CASCADE)",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		db.SetMaxIdleConns(8)
		for i := range 40 {
			cctx, cancel := context.WithCancel(ctx)
			// Canceled once the transaction wrote, fn failing or not (its
			// commit then fails, the rollback left to database/sql).
			err := dialect.ApplyTx(cctx, db, func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO fk_parents (id) VALUES (?)", 1000+i); err != nil {
					return err
				}
				cancel()
				if i%2 == 0 {
					return ctx.Err()
				}
				return nil
			})
			cancel()
			if err == nil {
				t.Fatalf("iteration %d: a canceled ApplyTx succeeded", i)
			}
			// Every pooled connection refuses a child of a missing parent.
			var conns []*sql.Conn
			for range 8 {
				c, err := db.DB.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for j, c := range conns {
				tx, err := c.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.ExecContext(ctx, "INSERT INTO fk_children (id, parent_id) VALUES (1, 424242)")
				_ = tx.Rollback()
				if err == nil {
					t.Fatalf("iteration %d: pooled connection %d accepts a child of a missing parent", i, j)
				}
			}
			for _, c := range conns {
				c.Close()
			}
		}
	})
}
