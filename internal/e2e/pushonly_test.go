package e2e_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

type h2Device struct {
	bun.BaseModel `bun:"table:h2_devices"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type h2Reading struct {
	bun.BaseModel `bun:"table:h2_readings"`
	ID            int64     `bun:"id,pk,autoincrement"`
	DeviceID      int64     `bun:"device_id,notnull"`
	Value         int64     `bun:"value,notnull"`
	Device        *h2Device `bun:"rel:belongs-to,join:device_id=id,on_delete:CASCADE"`
}

func h2PushOnlyModels() []any {
	return []any{(*h2Device)(nil), dbsync.PushOnly((*h2Reading)(nil))}
}

func h2CreatePushOnly(ctx context.Context, db bun.IDB) error {
	for _, m := range []any{(*h2Device)(nil), (*h2Reading)(nil)} {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// A node deletes a device (a both-ways table) whose readings (a push-only
// child table, ON DELETE CASCADE) another node pushed: the server refuses
// the orphaning delete (V4), and no pull could bring the readings to the
// node, so the refusal is a ScopeError naming the device (before, a
// push_rejected at every sync); giving the delete up brings the device
// back and lets the node's other change through.
func TestPushOnlyChildOfDeletedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1'), (2, 'd2')")
			for _, n := range []*synctest.Client{a, b} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			lcExec(t, a.DB, "INSERT INTO h2_readings (id, device_id, value) VALUES (100, 1, 10)")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			lcExec(t, b.DB, "INSERT INTO h2_readings (device_id, value) VALUES (2, 20)", "DELETE FROM h2_devices WHERE id = 1")
			giveUp(t, b.Client, protocol.ScopeEntry{Table: "h2_devices", PK: "1"})
			var n int
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM h2_readings").Scan(ctx, &n); err != nil || n != 2 {
				t.Fatalf("server readings: %d, %v; want 2", n, err)
			}
			if got := keys(t, b.DB, "h2_devices"); len(got) != 2 {
				t.Fatalf("b's devices: %v, want 1 and 2", got)
			}
		})
	}
}

// Two nodes insert readings (push-only, integer keys from each node's own
// sequence): K1 covers push-only tables too, so b's reading moves past
// a's instead of replacing it on the server (it did, before).
func TestPushOnlyKeysDoNotCollide(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1')")
			for _, n := range []*synctest.Client{a, b} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			lcExec(t, a.DB, "INSERT INTO h2_readings (device_id, value) VALUES (1, 10)")
			lcExec(t, b.DB, "INSERT INTO h2_readings (device_id, value) VALUES (1, 20)")
			for _, n := range []*synctest.Client{a, b} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := srv.DB.NewRaw("SELECT COUNT(*) FROM h2_readings").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("server holds %d readings, want 2: %v", n, synctest.Dump(t, srv.DB, srv.Reg))
			}
		})
	}
}

// A node pushed a reading of a device (a push-only row, which it keeps
// and the server never sends back); the server's job purges the reading,
// and another node deletes the device, which nothing on the server
// references any more. The node's next pull deletes the device, and its
// copy of the reading with it, unlogged. Before, every pull of the node
// failed for good on the reading's foreign key.
func TestPushOnlyRowGoesWithDeletedParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			node := func(name string) *synctest.Client {
				return synctest.NewClientWith(t, srv, name, synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, h2PushOnlyModels()), h2CreatePushOnly, h2PushOnlyModels(), nil)
			}
			a, b := node("a"), node("b")
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1'), (2, 'd2')")
			mustSync(t, a)
			mustSync(t, b)
			lcExec(t, a.DB, "INSERT INTO h2_readings (id, device_id, value) VALUES (100, 1, 10), (101, 2, 20)")
			mustSync(t, a)
			lcExec(t, srv.DB, "DELETE FROM h2_readings WHERE id = 100")
			lcExec(t, b.DB, "DELETE FROM h2_devices WHERE id = 1")
			mustSync(t, b)

			for range 2 {
				mustSync(t, a)
			}
			wantKeys(t, a, "h2_devices", "2")
			wantKeys(t, a, "h2_readings", "101")
			if n := pendingCount(t, a); n != 0 {
				t.Fatalf("a holds %d pending operations, want none", n)
			}
		})
	}
}

// TestRepairSettlesAppliedPushOnly, servers and nodes of both dialects,
// over HTTP: a node pushes a reading (a push-only row) and loses the
// answer, then repairs. The repair asks the server about the push first
// (merge.md X2): applied, the reading's operation leaves the log as after
// an answered push. Before, the repair replaced the pulled tables' log
// only, the reading's insert stayed pending, and the next sync pushed it
// again: a second version rewriting it (bringing back a reading the
// server's job had purged meanwhile).
func TestRepairSettlesAppliedPushOnly(t *testing.T) {
	t.Parallel()
	mods := h2PushOnlyModels()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, mods)
			_, h := synctest.NewHandler(t, db, mods, nil)
			loser := synctest.NewAnswerLoser(h)
			hs := httptest.NewServer(loser)
			t.Cleanup(hs.Close)
			a := synctest.NewClientWith(t, nil, "a", synctest.ClientDB(t, kind, "h2po", h2CreatePushOnly, mods), h2CreatePushOnly, mods,
				&client.Config{URL: hs.URL + "/sync"})
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1')")
			mustSync(t, a)
			lcExec(t, a.DB, "INSERT INTO h2_readings (id, device_id, value) VALUES (100, 1, 10)")
			loser.Arm("push")
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			versions := func() int {
				var n int
				if err := db.NewRaw("SELECT COUNT(*) FROM sync_versions").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := versions()
			if _, err := a.Repair(ctx, nil); err != nil {
				t.Fatalf("repair: %v", err)
			}
			if n := pendingCount(t, a); n != 0 {
				t.Fatalf("a holds %d pending operations after the repair, want none (the applied push's left the log)", n)
			}
			mustSync(t, a)
			if got := versions(); got != before {
				t.Fatalf("server holds %d versions after a's sync, want %d (the applied push not pushed again)", got, before)
			}
			if got := keys(t, db, "h2_readings"); len(got) != 1 {
				t.Fatalf("server readings %v, want [100]", got)
			}
		})
	}
}

// TestRepairKeepsPushOnlyRows, servers and nodes of both dialects: a
// repair empties the pulled tables before it writes the server's rows;
// on a PostgreSQL node the ON DELETE CASCADE of the readings' foreign key
// (a push-only table) ran at once, deferred constraints or not, and
// deleted the node's readings with their devices: a pushed one was gone
// from the node, and one not pushed yet was lost silently (its insert,
// still pending, dropped by the next push's compression, merge.md C7). A
// repair now leaves push-only rows as they were, but for those
// referencing a row it does not bring back (merge.md A6).
func TestRepairKeepsPushOnlyRows(t *testing.T) {
	t.Parallel()
	mods := h2PushOnlyModels()
	// The node's readings may hold a generated column the model leaves
	// out (README): kept rows are put back without it.
	generated := func(ctx context.Context, db bun.IDB) error {
		if err := h2CreatePushOnly(ctx, db); err != nil {
			return err
		}
		if cols, err := dialect.Columns(ctx, db, "h2_readings"); err != nil || cols["doubled"].Generated {
			return err // (the schema is created again on a copy of it)
		}
		stored := "STORED"
		if dialect.MustOf(db) == dialect.SQLite {
			stored = "VIRTUAL" // (what SQLite's ALTER TABLE can add)
		}
		_, err := db.ExecContext(ctx, "ALTER TABLE h2_readings ADD COLUMN doubled bigint GENERATED ALWAYS AS (value * 2) "+stored)
		return err
	}
	for _, kind := range dbtest.Kinds {
		for _, v := range []struct {
			name, key string
			schema    func(context.Context, bun.IDB) error
		}{
			{"", "h2po", h2CreatePushOnly},
			{"/generated column", "h2pogen", generated},
		} {
			t.Run(kind+v.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, mods), h2CreatePushOnly, mods, nil)
				a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, v.key, v.schema, mods), v.schema, mods, nil)
				lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1')")
				lcExec(t, a.DB, "INSERT INTO h2_readings (id, device_id, value) VALUES (100, 1, 10)")
				mustSync(t, a)
				lcExec(t, a.DB, "INSERT INTO h2_readings (id, device_id, value) VALUES (101, 1, 11)")
				if _, err := a.Repair(ctx, nil); err != nil {
					t.Fatalf("repair: %v", err)
				}
				wantKeys(t, a, "h2_devices", "1")
				wantKeys(t, a, "h2_readings", "100", "101")
				if n := pendingCount(t, a); n != 1 {
					t.Fatalf("a holds %d pending operations after the repair, want 1 (reading 101's insert)", n)
				}
				mustSync(t, a)
				if got := keys(t, srv.DB, "h2_readings"); !slices.Equal(got, []string{"100", "101"}) {
					t.Fatalf("server readings %v, want [100 101]", got)
				}
			})
		}
	}
}

// TestRepairKeepsUntrackedChildren, nodes of both dialects: a node's
// own tables that dbsync does not track (tags and marks of its own)
// reference a pulled table, ON DELETE CASCADE and ON DELETE SET NULL. A
// repair empties the pulled tables and writes the server's rows back:
// the untracked rows referencing a row the repair brings back keep their
// values, and so do the rows of an untracked table referencing those
// (notes on the tags). Those referencing a row the repair gives up (the
// node's device never pushed, Force) go as that row's delete would take
// them: the tag and its note deleted, the mark's device NULL (on
// SQLite, which applies with its foreign keys off, dbsync runs the
// actions at the repair's end: store.RunDeleteActions). Before, a
// PostgreSQL node's repair ran the actions when it emptied the table:
// every tag and note was deleted and every mark lost its device,
// silently (and a SQLite node ran no action at all). A plain foreign key (NO ACTION) from such a table,
// which refused the repair whatever it brought back, refuses it only
// when the row it references does not come back. A json column and an
// identity column GENERATED ALWAYS in such a table made that restore
// fail every repair (found by review).
func TestRepairKeepsUntrackedChildren(t *testing.T) {
	t.Parallel()
	mods := h2PushOnlyModels()
	schema := func(ctx context.Context, db bun.IDB) error {
		if err := h2CreatePushOnly(ctx, db); err != nil {
			return err
		}
		for _, q := range []string{
			"CREATE TABLE IF NOT EXISTS h2_local_tags (id bigint PRIMARY KEY, device_id bigint NOT NULL REFERENCES h2_devices (id) ON DELETE CASCADE, label text)",
			"CREATE TABLE IF NOT EXISTS h2_local_marks (id bigint PRIMARY KEY, device_id bigint REFERENCES h2_devices (id) ON DELETE SET NULL)",
			"CREATE TABLE IF NOT EXISTS h2_local_notes (id bigint PRIMARY KEY, tag_id bigint NOT NULL REFERENCES h2_local_tags (id) ON DELETE CASCADE)",
			"CREATE TABLE IF NOT EXISTS h2_local_pins (id bigint PRIMARY KEY, device_id bigint NOT NULL REFERENCES h2_devices (id))",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		// A json column (no equality operator) and an identity column
		// GENERATED ALWAYS (an UPDATE can only set it to DEFAULT): the
		// restore must neither compare the one nor set the other.
		q := "CREATE TABLE IF NOT EXISTS h2_local_jtags (id bigint PRIMARY KEY, device_id bigint REFERENCES h2_devices (id) ON DELETE CASCADE, meta json, seq bigint GENERATED ALWAYS AS IDENTITY)"
		if dialect.MustOf(db) == dialect.SQLite {
			q = "CREATE TABLE IF NOT EXISTS h2_local_jtags (id bigint PRIMARY KEY, device_id bigint REFERENCES h2_devices (id) ON DELETE CASCADE, meta text, seq bigint)"
		}
		_, err := db.ExecContext(ctx, q)
		return err
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2po", h2CreatePushOnly, mods), h2CreatePushOnly, mods, nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "h2pountracked", schema, mods), schema, mods, nil)
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (1, 'd1'), (2, 'd2')")
			mustSync(t, a)
			// Device 3 is the node's, never pushed: the forced repair
			// gives it up, and its rows go as its delete would take them.
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (3, 'd3')")
			lcExec(t, a.DB, "INSERT INTO h2_local_tags (id, device_id, label) VALUES (1, 1, 'mine'), (2, 2, 'theirs'), (3, 3, 'gone')")
			lcExec(t, a.DB, "INSERT INTO h2_local_marks (id, device_id) VALUES (1, 1), (2, 2), (3, 3), (4, NULL)")
			lcExec(t, a.DB, "INSERT INTO h2_local_notes (id, tag_id) VALUES (1, 1), (3, 3)")
			lcExec(t, a.DB, "INSERT INTO h2_local_pins (id, device_id) VALUES (1, 1)")
			lcExec(t, a.DB, `INSERT INTO h2_local_jtags (id, device_id, meta) VALUES (1, 1, '{"a":1}')`)
			if _, err := a.Repair(ctx, &client.RepairOptions{Force: true}); err != nil {
				t.Fatalf("repair: %v", err)
			}
			wantKeys(t, a, "h2_devices", "1", "2")
			tags, marks, notes := []string{"1", "2"}, []string{"1:1", "2:2", "3:null", "4:null"}, []string{"1"}
			wantKeys(t, a, "h2_local_tags", tags...)
			wantKeys(t, a, "h2_local_notes", notes...)
			var got []string
			if err := a.DB.NewRaw("SELECT CAST(id AS TEXT) || ':' || COALESCE(CAST(device_id AS TEXT), 'null') FROM h2_local_marks ORDER BY id").Scan(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, marks) {
				t.Fatalf("marks after the repair %v, want %v", got, marks)
			}
			wantKeys(t, a, "h2_local_pins", "1")
			wantKeys(t, a, "h2_local_jtags", "1")
			if kind == dbtest.KindSQLite {
				return
			}
			// A pin (a plain foreign key, NO ACTION) on a device the
			// repair gives up refuses it, as that device's delete would
			// be refused, nothing applied.
			lcExec(t, a.DB, "INSERT INTO h2_devices (id, name) VALUES (5, 'd5')")
			lcExec(t, a.DB, "INSERT INTO h2_local_pins (id, device_id) VALUES (2, 5)")
			if _, err := a.Repair(ctx, &client.RepairOptions{Force: true}); !errors.Is(err, dbsync.ErrForeignKey) {
				t.Fatalf("repair giving up a device a pin references: %v, want ErrForeignKey", err)
			}
			wantKeys(t, a, "h2_devices", "1", "2", "5")
			wantKeys(t, a, "h2_local_pins", "1", "2")
		})
	}
}
