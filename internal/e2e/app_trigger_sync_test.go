package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uptrace/bun"
	bundialect "github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// atSchema is apSchema's tables with an application trigger on ap_items
// that writes the tracked table ap_audit, on SQLite and on PostgreSQL,
// skipping dbsync's own writes when guarded (README, Capture guarantees).
func atSchema(guarded bool) func(ctx context.Context, db bun.IDB) error {
	return func(ctx context.Context, db bun.IDB) error {
		if err := apSchema(false)(ctx, db); err != nil {
			return err
		}
		var qs []string
		if db.Dialect().Name() == bundialect.PG {
			when := ""
			if guarded {
				when = "WHEN (current_setting('dbsync.capture', true) IS DISTINCT FROM 'off') "
			}
			qs = []string{
				"CREATE OR REPLACE FUNCTION ap_items_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN " +
					"INSERT INTO ap_audit (item_id, what) VALUES (NEW.id, 'title:' || NEW.title); RETURN NULL; END $$",
				"DROP TRIGGER IF EXISTS ap_items_audit ON ap_items",
				"CREATE TRIGGER ap_items_audit AFTER UPDATE OF title ON ap_items FOR EACH ROW " + when + "EXECUTE FUNCTION ap_items_audit()",
			}
		} else {
			when := ""
			if guarded {
				when = "WHEN (SELECT capture FROM sync_state) "
			}
			qs = []string{
				"CREATE TRIGGER IF NOT EXISTS ap_items_audit AFTER UPDATE OF title ON ap_items " + when +
					"BEGIN INSERT INTO ap_audit (item_id, what) VALUES (NEW.id, 'title:' || NEW.title); END",
			}
		}
		for _, q := range qs {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
}

// TestAppTriggerOnSyncWrites: an application's trigger on a tracked table
// fires for the rows dbsync writes too (a pull on a node, a push applied
// on the server), with capture off: what it writes to a tracked table
// then is never logged, so the server and the nodes hold different
// rows. Guarded by the capture switch (the README's WHEN clauses), the
// trigger writes only for the application's own writes, which are
// logged and synced, and every database holds the same rows.
func TestAppTriggerOnSyncWrites(t *testing.T) {
	t.Parallel()
	for _, guarded := range []bool{true, false} {
		for _, kind := range dbtest.Kinds {
			name := fmt.Sprintf("%s/guarded=%v", kind, guarded)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				key := fmt.Sprintf("apptrigger.%v", guarded)
				schema := atSchema(guarded)
				srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, key, schema, apModels()), schema, apModels(), nil)
				mk := func(name string) *synctest.Client {
					return synctest.NewClientWith(t, srv, name, synctest.ClientSQLite(t, key, schema, apModels()), schema, apModels(), nil)
				}
				e := &apEnv{t: t, srv: srv, a: mk("a"), b: mk("b")}
				run(t, e.a.DB, "INSERT INTO ap_groups (id, code, name) VALUES (1, 'g1', 'one')")
				run(t, e.a.DB, "INSERT INTO ap_items (id, group_id, alt_group_id, title) VALUES (1, 1, 1, 'i1'), (2, 1, 1, 'i2')")
				mustSync(t, e.a)
				mustSync(t, e.b)
				run(t, e.a.DB, "UPDATE ap_items SET title = 'renamed' WHERE id = 1")
				if !guarded {
					mustSync(t, e.a)
					mustSync(t, e.b)
					ds := synctest.Dump(t, e.srv.DB, e.srv.Reg)
					da, db := synctest.Dump(t, e.a.DB, e.a.Reg), synctest.Dump(t, e.b.DB, e.b.Reg)
					t.Logf("server %v\na %v\nb %v", ds["ap_audit"], da["ap_audit"], db["ap_audit"])
					if synctest.Diff(ds, da) == "" && synctest.Diff(ds, db) == "" {
						t.Fatal("an unguarded trigger's writes during sync converged: update the README")
					}
					return
				}
				e.converged("guarded")
				var n int
				if err := e.srv.DB.NewRaw("SELECT count(*) FROM ap_audit").Scan(context.Background(), &n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Fatalf("server holds %d audit rows, want the node's one", n)
				}
			})
		}
	}
}
