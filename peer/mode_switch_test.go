package peer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/migrations"
	"github.com/go-dbsync/dbsync/oplog"
)

// cascade makes a delete of a folder delete its docs while a sync
// applies it: on PostgreSQL the foreign key does (ON DELETE CASCADE); on
// SQLite, whose applies run with foreign keys off, a trigger of the
// application's.
func cascade(t testing.TB, db *bun.DB, kind string) {
	t.Helper()
	if kind != dbtest.KindSQLite {
		return
	}
	if _, err := db.ExecContext(ctx, "CREATE TRIGGER folder_docs AFTER DELETE ON folders BEGIN DELETE FROM docs WHERE folder_id = OLD.id; END"); err != nil {
		t.Fatal(err)
	}
}

// One database may sync some tables in the peer mode and others
// client/server. Each mode applies the rows it receives with its capture
// switched off; the writes that apply causes in the other mode's tables
// (here a delete of a folder that deletes its docs: cascade) are the
// application's, and that mode logs them. Before, the two modes shared
// one switch: the cascaded delete was logged by neither, and the other
// nodes of that mode kept the row.
func TestCaptureSwitchPerMode(t *testing.T) {
	t.Parallel()
	models := []any{(*Folder)(nil), (*Doc)(nil)}
	schema := synctest.CreateTables(models...)
	folders, docs := []any{(*Folder)(nil)}, []any{(*Doc)(nil)}
	for _, kind := range dbtest.Kinds {
		// Folders sync peer to peer, docs client/server: a peer's
		// delete of a folder, applied here, deletes its docs, which the
		// operations log must hold.
		t.Run(kind+"/peer apply cascades into an oplog table", func(t *testing.T) {
			t.Parallel()
			a := synctest.NewNodeWith(t, synctest.NodeDB(t, kind, "modeswitch", schema), folders, nil)
			b := synctest.NewNodeWith(t, synctest.NodeDB(t, kind, "modeswitch", schema), folders, nil)
			reg, err := dbsync.Track(a.DB(), docs...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := oplog.Install(ctx, a.DB(), reg, nil); err != nil {
				t.Fatal(err)
			}
			cascade(t, a.DB(), kind)
			f := &Folder{ID: uuid.New(), Name: "f"}
			d := &Doc{ID: uuid.New(), FolderID: f.ID, Body: "d"}
			insert(t, a, f)
			insert(t, a, d)
			mustSync(t, b, a.AsPeer())
			if n := exec(t, b, "DELETE FROM folders WHERE id = ?", f.ID); n != 1 {
				t.Fatalf("deleted %d folders on b, want 1", n)
			}
			mustSync(t, a, b.AsPeer())
			if n := count(t, a, "docs"); n != 0 {
				t.Fatalf("a holds %d docs after its folder's delete, want 0 (cascade)", n)
			}
			var ops []string
			if err := a.DB().NewRaw("SELECT command FROM sync_operations WHERE row_id = ? ORDER BY \"order\"", d.ID.String()).Scan(ctx, &ops); err != nil {
				t.Fatal(err)
			}
			if len(ops) != 2 || ops[1] != "d" {
				t.Fatalf("operations logged of the doc: %v, want [i d]", ops)
			}
		})
		// Folders sync client/server, docs peer to peer on the server's
		// database: a client's delete of a folder, applied by the
		// server's push, deletes its docs, which the peer feed must hold.
		t.Run(kind+"/push apply cascades into a peer table", func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, kind, "modeswitch", schema)
			node := synctest.NewNodeWith(t, db, docs, nil)
			srv := synctest.NewServerWith(t, db, schema, folders, nil)
			cascade(t, db, kind)
			cl := synctest.NewClientWith(t, srv, "c", dbtest.Open(t, dbtest.KindSQLite), synctest.CreateTables(folders...), folders, nil)
			f := &Folder{ID: uuid.New(), Name: "f"}
			if _, err := cl.DB.NewInsert().Model(f).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Push(ctx); err != nil {
				t.Fatal(err)
			}
			d := &Doc{ID: uuid.New(), FolderID: f.ID, Body: "d"}
			insert(t, node, d)
			if _, err := cl.DB.NewDelete().Model(f).WherePK().Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(t, node, "docs"); n != 0 {
				t.Fatalf("the server holds %d docs after their folder's delete, want 0 (cascade)", n)
			}
			v, ok := versionOf(t, db, "docs", d.ID.String())
			if !ok || !v.Deleted {
				t.Fatalf("version of the deleted doc: %+v (found %v), want deleted", v, ok)
			}
		})
	}
}

// A node installed by an earlier release has capture triggers that read
// the shared switch (sync_state.capture on SQLite, dbsync.capture on
// PostgreSQL), and no sync_lww_capture. peer.New migrates and re-creates
// them: client/server sync's switch off no longer silences them.
func TestCaptureSwitchUpgrade(t *testing.T) {
	t.Parallel()
	models := []any{(*Folder)(nil), (*Doc)(nil)}
	folders := []any{(*Folder)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, kind, "modeswitch", synctest.CreateTables(models...))
			synctest.NewNodeWith(t, db, folders, nil)
			earlierRelease(t, db, kind)
			// Inserts a folder with client/server sync's capture off, as
			// its applies write; reports whether the peer versioned it.
			versioned := func() bool {
				t.Helper()
				f := &Folder{ID: uuid.New(), Name: "f"}
				err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
						return err
					}
					if _, err := tx.NewInsert().Model(f).Exec(ctx); err != nil {
						return err
					}
					return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
				})
				if err != nil {
					t.Fatal(err)
				}
				_, ok := versionOf(t, db, "folders", f.ID.String())
				return ok
			}
			if versioned() {
				t.Fatal("the earlier release's triggers versioned a write with client/server capture off: not that release")
			}
			synctest.NewNodeWith(t, db, folders, nil)
			if !versioned() {
				t.Fatal("after peer.New, a write with client/server capture off has no version")
			}
		})
	}
}

// earlierRelease puts db's peer capture back as a release before
// sync_lww_capture left it: triggers reading the shared switch, without
// the table and its migration.
func earlierRelease(t testing.TB, db *bun.DB, kind string) {
	t.Helper()
	var defs []string
	q := "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%sync_lww_capture%'"
	if kind == dbtest.KindPostgres {
		q = `SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
AND p.prosrc LIKE '%dbsync.peer_capture%'`
	}
	if err := db.NewRaw(q).Scan(ctx, &defs); err != nil {
		t.Fatal(err)
	}
	if len(defs) == 0 {
		t.Fatal("no capture trigger reads the peer's switch")
	}
	for _, def := range defs {
		old := strings.ReplaceAll(def, dialect.PeerSwitch.SQLiteOn(), "(SELECT capture FROM sync_state WHERE id = 1) = 1")
		old = strings.ReplaceAll(old, "'"+dialect.PeerSwitch.PGSetting()+"'", "'dbsync.capture'")
		if kind == dbtest.KindSQLite {
			name := old[len("CREATE TRIGGER ") : len("CREATE TRIGGER ")+strings.Index(old[len("CREATE TRIGGER "):], " ")]
			if _, err := db.ExecContext(ctx, "DROP TRIGGER "+name); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, old); err != nil {
			t.Fatalf("%s: %v", old, err)
		}
	}
	for _, q := range []string{
		"DROP TABLE sync_lww_capture",
		"DELETE FROM " + migrations.PeerTableName + " WHERE name LIKE '0003%'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}
