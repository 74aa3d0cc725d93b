package peer_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
)

// XRow, IDXRow and LockNodeRow are tables whose names make the names of
// one's trigger functions out of another's prefix: x's identity function
// was sync_lww_id_x, id_x's capture function too, and lock_node's capture
// function was the shared sync_lww_lock_node.
type XRow struct {
	bun.BaseModel `bun:"table:x"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type IDXRow struct {
	bun.BaseModel `bun:"table:id_x"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type LockNodeRow struct {
	bun.BaseModel `bun:"table:lock_node"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	Name          string    `bun:"name,notnull"`
}

var namesModels = []any{(*XRow)(nil), (*IDXRow)(nil), (*LockNodeRow)(nil)}

// namesNode makes a fresh database of kind with the tables x, id_x and
// lock_node a node.
func namesNode(t *testing.T, kind string) *peer.Node {
	t.Helper()
	db := synctest.NodeDB(t, kind, "names", synctest.CreateTables(namesModels...))
	return synctest.NewNodeWith(t, db, namesModels, nil)
}

// tableNames lists the names in table, sorted.
func tableNames(t *testing.T, n *peer.Node, table string) []string {
	t.Helper()
	var out []string
	if err := n.DB().NewSelect().Table(table).Column("name").Order("name").Scan(ctx, &out); err != nil {
		t.Fatalf("%s: %v", table, err)
	}
	return out
}

// writeNames inserts, updates and deletes rows of the three tables on n,
// leaving the names want.
func writeNames(t *testing.T, n *peer.Node, tag string) {
	t.Helper()
	exec(t, n, "INSERT INTO x (name) VALUES (?), (?)", tag+"x1", tag+"x2")
	exec(t, n, "UPDATE x SET name = ? WHERE name = ?", tag+"x3", tag+"x2")
	exec(t, n, "INSERT INTO id_x (name) VALUES (?), (?)", tag+"i1", tag+"i2")
	exec(t, n, "DELETE FROM id_x WHERE name = ?", tag+"i2")
	exec(t, n, "INSERT INTO lock_node (id, name) VALUES (?, ?), (?, ?)", uuid.New(), tag+"l1", uuid.New(), tag+"l2")
	exec(t, n, "UPDATE lock_node SET name = ? WHERE name = ?", tag+"l3", tag+"l1")
}

// checkNames fails unless n holds the rows writeNames left for each tag.
func checkNames(t *testing.T, n *peer.Node, tags ...string) {
	t.Helper()
	want := map[string][]string{}
	for _, tag := range tags {
		want["x"] = append(want["x"], tag+"x1", tag+"x3")
		want["id_x"] = append(want["id_x"], tag+"i1")
		want["lock_node"] = append(want["lock_node"], tag+"l2", tag+"l3")
	}
	for table, w := range want {
		slices.Sort(w)
		if got := tableNames(t, n, table); !slices.Equal(got, w) {
			t.Errorf("%s holds %v, want %v", table, got, w)
		}
	}
}

// TestTableNamesShareNoFunction: tables x and id_x (and lock_node), each
// with its own trigger functions on PostgreSQL though one's name is
// another's prefix and a table's name: writes to each are captured as
// that table's, and sync both ways with a SQLite node.
func TestTableNamesShareNoFunction(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := namesNode(t, kind), namesNode(t, dbtest.KindSQLite)
			writeNames(t, a, "a")
			checkNames(t, a, "a")
			mustSync(t, b, a.AsPeer())
			checkNames(t, b, "a")
			writeNames(t, b, "b")
			mustSync(t, a, b.AsPeer())
			checkNames(t, a, "a", "b")
			sameDigests(t, a, b)
		})
	}
}

// TestOldFunctionNamesUpgrade: a PostgreSQL node installed by an earlier
// release has its trigger functions under the old names (x's identity
// function sync_lww_id_x, the lock function sync_lww_lock_node). peer.New
// re-points the triggers to the functions of the new names and drops the
// old ones, and the node's writes, before and after, sync.
func TestOldFunctionNamesUpgrade(t *testing.T) {
	t.Parallel()
	xOnly := []any{(*XRow)(nil)}
	db := synctest.NodeDB(t, dbtest.KindPostgres, "names", synctest.CreateTables(namesModels...))
	a := synctest.NewNodeWith(t, db, xOnly, nil)
	// What an earlier release installed.
	for _, q := range []string{
		`CREATE FUNCTION sync_lww_lock_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('dbsync.capture', true) IS DISTINCT FROM 'off' THEN
    PERFORM 1 FROM sync_lww_node WHERE id = 1 FOR NO KEY UPDATE;
  END IF;
  RETURN NULL;
END$$`,
		`DROP TRIGGER sync_lww_lock ON x`,
		`CREATE TRIGGER sync_lww_lock BEFORE INSERT OR UPDATE OR DELETE ON x FOR EACH STATEMENT EXECUTE FUNCTION sync_lww_lock_node()`,
		`CREATE FUNCTION sync_lww_id_x() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.sync_uuid := COALESCE(NEW.sync_uuid::uuid::text, gen_random_uuid()::text);
  RETURN NEW;
END$$`,
		`DROP TRIGGER sync_lww_id ON x`,
		`CREATE TRIGGER sync_lww_id BEFORE INSERT OR UPDATE OF sync_uuid ON x FOR EACH ROW EXECUTE FUNCTION sync_lww_id_x()`,
		`DROP FUNCTION sync_lwwid_x()`,
		`DROP FUNCTION sync_lwwlock_node()`,
		`INSERT INTO x (name) VALUES ('before')`,
	} {
		exec(t, a, q)
	}

	a = synctest.NewNodeWith(t, db, xOnly, nil)
	fns := map[string]string{}
	rows, err := db.QueryContext(ctx, `SELECT tg.tgname, p.proname FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
WHERE tg.tgrelid = 'x'::regclass AND NOT tg.tgisinternal`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tg, fn string
		if err := rows.Scan(&tg, &fn); err != nil {
			t.Fatal(err)
		}
		fns[tg] = fn
	}
	rows.Close()
	want := map[string]string{"sync_lww_lock": "sync_lwwlock_node", "__sync_lww": "sync_lww_x", "sync_lww_truncate": "sync_lww_x", "sync_lww_id": "sync_lwwid_x"}
	if !maps.Equal(fns, want) {
		t.Errorf("triggers of x use %v, want %v", fns, want)
	}
	var old []string
	if err := db.NewSelect().TableExpr("pg_proc").Column("proname").
		Where("pronamespace = current_schema()::regnamespace AND proname IN ('sync_lww_id_x', 'sync_lww_lock_node')").Scan(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if len(old) > 0 {
		t.Errorf("functions of the old names %v stay", old)
	}

	exec(t, a, "INSERT INTO x (name) VALUES ('after')")
	b := synctest.NewNodeWith(t, synctest.NodeDB(t, dbtest.KindSQLite, "names", synctest.CreateTables(namesModels...)), xOnly, nil)
	mustSync(t, b, a.AsPeer())
	for _, n := range []*peer.Node{a, b} {
		if got, want := tableNames(t, n, "x"), []string{"after", "before"}; !slices.Equal(got, want) {
			t.Errorf("x holds %v, want %v", got, want)
		}
	}
	sameDigests(t, a, b)
}

// ClashLong and ClashShort are tables whose peer objects would share
// names: the long name is shortened, with the CRC-32 of the whole name
// (f9589004) as a suffix, which spells out the short one.
type ClashLong struct {
	bun.BaseModel `bun:"table:clash_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
}

type ClashShort struct {
	bun.BaseModel `bun:"table:clash_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_f9589004"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
}

// TestObjectNameClash: peer.New refuses, before it writes anything, two
// tables whose triggers or trigger functions would have one name (the
// second's would replace the first's).
func TestObjectNameClash(t *testing.T) {
	t.Parallel()
	models := []any{(*ClashLong)(nil), (*ClashShort)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, kind, "clash", synctest.CreateTables(models...))
			reg, err := dbsync.Track(db, models...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = peer.New(ctx, db, reg, nil)
			if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "_f9589004") {
				t.Fatalf("peer.New: %v, want ErrInvalidModel naming the tables", err)
			}
		})
	}
}
