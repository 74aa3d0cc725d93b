package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/uptrace/bun"
	bundialect "github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

type apGroup struct {
	bun.BaseModel `bun:"table:ap_groups"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Code          string `bun:"code,notnull"`
	Name          string `bun:"name,notnull"`
}

type apItem struct {
	bun.BaseModel `bun:"table:ap_items"`
	ID            int64         `bun:"id,pk,autoincrement"`
	GroupID       sql.NullInt64 `bun:"group_id"`
	AltGroupID    int64         `bun:"alt_group_id,notnull"`
	Title         string        `bun:"title,notnull"`
}

type apSub struct {
	bun.BaseModel `bun:"table:ap_subs"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ItemID        int64  `bun:"item_id,notnull"`
	Note          string `bun:"note,notnull"`
}

type apAudit struct {
	bun.BaseModel `bun:"table:ap_audit"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ItemID        int64  `bun:"item_id,notnull"`
	What          string `bun:"what,notnull"`
}

func apModels() []any {
	return []any{(*apGroup)(nil), (*apItem)(nil), (*apSub)(nil), (*apAudit)(nil)}
}

func apSchema(withTrigger bool) func(ctx context.Context, db bun.IDB) error {
	return func(ctx context.Context, db bun.IDB) error {
		var qs []string
		if db.Dialect().Name() == bundialect.PG {
			qs = []string{
				"CREATE TABLE IF NOT EXISTS ap_groups (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE, name text NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_items (id bigserial PRIMARY KEY, group_id bigint REFERENCES ap_groups(id) ON DELETE SET NULL ON UPDATE CASCADE, alt_group_id bigint NOT NULL DEFAULT 1 REFERENCES ap_groups(id) ON DELETE SET DEFAULT, title text NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_subs (id bigserial PRIMARY KEY, item_id bigint NOT NULL REFERENCES ap_items(id) ON DELETE CASCADE ON UPDATE CASCADE, note text NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_audit (id bigserial PRIMARY KEY, item_id bigint NOT NULL, what text NOT NULL)",
			}
		} else {
			qs = []string{
				"CREATE TABLE IF NOT EXISTS ap_groups (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL UNIQUE, name TEXT NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_items (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id INTEGER REFERENCES ap_groups(id) ON DELETE SET NULL ON UPDATE CASCADE, alt_group_id INTEGER NOT NULL DEFAULT 1 REFERENCES ap_groups(id) ON DELETE SET DEFAULT, title TEXT NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_subs (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id INTEGER NOT NULL REFERENCES ap_items(id) ON DELETE CASCADE ON UPDATE CASCADE, note TEXT NOT NULL)",
				"CREATE TABLE IF NOT EXISTS ap_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id INTEGER NOT NULL, what TEXT NOT NULL)",
			}
			if withTrigger {
				qs = append(qs,
					"CREATE TRIGGER IF NOT EXISTS ap_items_audit AFTER UPDATE OF title ON ap_items WHEN (SELECT capture FROM sync_state) BEGIN INSERT INTO ap_audit (item_id, what) VALUES (NEW.id, 'title:' || NEW.title); END",
					"CREATE TRIGGER IF NOT EXISTS ap_items_audit_del AFTER DELETE ON ap_items WHEN (SELECT capture FROM sync_state) BEGIN INSERT INTO ap_audit (item_id, what) VALUES (OLD.id, 'gone'); END",
				)
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

type apEnv struct {
	t    *testing.T
	srv  *synctest.Server
	a, b *synctest.Client
}

func newAPEnv(t *testing.T, kind string) *apEnv {
	sdb := synctest.ServerDB(t, kind, "apraw", apSchema(false), apModels())
	srv := synctest.NewServerWith(t, sdb, apSchema(false), apModels(), nil)
	mk := func(name string) *synctest.Client {
		db := synctest.ClientSQLite(t, "apraw", apSchema(true), apModels())
		return synctest.NewClientWith(t, srv, name, db, apSchema(true), apModels(), nil)
	}
	return &apEnv{t: t, srv: srv, a: mk("a"), b: mk("b")}
}

func (e *apEnv) converged(step string) {
	e.t.Helper()
	mustSync(e.t, e.a)
	mustSync(e.t, e.b)
	mustSync(e.t, e.a)
	ds := synctest.Dump(e.t, e.srv.DB, e.srv.Reg)
	if d := synctest.Diff(ds, synctest.Dump(e.t, e.a.DB, e.a.Reg)); d != "" {
		e.t.Fatalf("%s: server and a differ:\n%s", step, d)
	}
	if d := synctest.Diff(ds, synctest.Dump(e.t, e.b.DB, e.b.Reg)); d != "" {
		e.t.Fatalf("%s: server and b differ:\n%s", step, d)
	}
	if n := pendingCount(e.t, e.a) + pendingCount(e.t, e.b); n != 0 {
		e.t.Fatalf("%s: %d pending operations left", step, n)
	}
}

// TestAppRawSQL: a node's application writes its tracked tables with raw
// SQL of every kind (upserts on a unique column, REPLACE deleting one or
// two other rows, UPDATE … FROM, DELETE … RETURNING, key updates with
// ON UPDATE CASCADE children, ON DELETE SET NULL / SET DEFAULT / CASCADE
// chains, savepoints rolled back, its own triggers writing another
// tracked table, guarded as the README says): after each, the server and
// both nodes hold the same rows, nothing pending.
func TestAppRawSQL(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name string
		qs   []string
	}{
		{"upsert_unique", []string{
			"INSERT INTO ap_groups (id, code, name) VALUES (100, 'g1', 'upserted') ON CONFLICT (code) DO UPDATE SET name = excluded.name",
			"INSERT INTO ap_groups (id, code, name) VALUES (101, 'g9', 'new') ON CONFLICT (code) DO UPDATE SET name = excluded.name",
		}},
		{"replace_unique_other_row", []string{
			// g2 (id 2) is referenced by items (SET NULL); REPLACE deletes it.
			"INSERT OR REPLACE INTO ap_groups (id, code, name) VALUES (102, 'g2', 'replaced')",
		}},
		{"replace_two_rows", []string{
			// id 3 exists (code g3) and code g4 is held by id 4: both go.
			"REPLACE INTO ap_groups (id, code, name) VALUES (3, 'g4', 'both')",
		}},
		{"update_from", []string{
			"UPDATE ap_items SET title = g.name FROM ap_groups g WHERE g.id = ap_items.group_id",
		}},
		{"delete_returning", []string{
			"DELETE FROM ap_items WHERE title = 'upserted' RETURNING id",
		}},
		{"update_pk_cascade", []string{
			"UPDATE ap_groups SET id = 500 WHERE id = 5",
			"UPDATE ap_items SET id = 900 WHERE id = 6",
		}},
		{"set_default", []string{
			"DELETE FROM ap_groups WHERE id = 7",
		}},
		{"savepoint", []string{
			"BEGIN",
			"INSERT INTO ap_groups (id, code, name) VALUES (20, 'g20', 'kept')",
			"SAVEPOINT s1",
			"INSERT INTO ap_groups (id, code, name) VALUES (21, 'g21', 'rolled back')",
			"UPDATE ap_groups SET name = 'rb' WHERE id = 20",
			"DELETE FROM ap_groups WHERE id = 101",
			"ROLLBACK TO s1",
			"SAVEPOINT s2",
			"UPDATE ap_groups SET name = 'kept2' WHERE id = 20",
			"RELEASE s2",
			"COMMIT",
		}},
		{"cascade_chain", []string{
			"DELETE FROM ap_items WHERE id = 900",
		}},
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newAPEnv(t, kind)
			run(t, e.a.DB, "INSERT INTO ap_groups (id, code, name) VALUES (1, 'g1', 'one'), (2, 'g2', 'two'), (3, 'g3', 'three'), (4, 'g4', 'four'), (5, 'g5', 'five'), (7, 'g7', 'seven')")
			run(t, e.a.DB, "INSERT INTO ap_items (id, group_id, alt_group_id, title) VALUES (1, 1, 1, 'i1'), (2, 2, 2, 'i2'), (3, 3, 1, 'i3'), (4, 4, 4, 'i4'), (6, 5, 7, 'i6')")
			run(t, e.a.DB, "INSERT INTO ap_subs (id, item_id, note) VALUES (1, 1, 's1'), (2, 6, 's2'), (3, 6, 's3'), (4, 2, 's4')")
			e.converged("seed")
			for _, st := range steps {
				conn, err := e.a.DB.Conn(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range st.qs {
					if _, err := conn.ExecContext(context.Background(), q); err != nil {
						t.Fatalf("%s: %s: %v", st.name, q, err)
					}
				}
				conn.Close()
				e.converged(st.name)
			}
		})
	}
}
