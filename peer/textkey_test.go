package peer_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
)

// Country has a text key chosen by the application.
type Country struct {
	bun.BaseModel `bun:"table:countries"`
	Code          string `bun:"code,pk"`
	Name          string `bun:"name,notnull"`
}

// City has a local integer key and references a country by its text key.
type City struct {
	bun.BaseModel `bun:"table:cities"`
	ID            int64  `bun:"id,pk,autoincrement"`
	CountryCode   string `bun:"country_code,notnull"`
	Name          string `bun:"name,notnull"`
}

func createCountries(ctx context.Context, db bun.IDB) error {
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if db.Dialect().Name() == dialect.PG {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS countries (code TEXT PRIMARY KEY, name TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS cities (id " + serial + ", country_code TEXT NOT NULL REFERENCES countries (code) ON DELETE CASCADE ON UPDATE CASCADE, name TEXT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func countryNode(t testing.TB, kind string) *peer.Node {
	t.Helper()
	models := []any{(*Country)(nil), (*City)(nil)}
	return synctest.NewTemplateNode(t, kind, "countries", createCountries, models, nil)
}

// countryContents lists a node's countries and cities, sorted.
func countryContents(t testing.TB, n *peer.Node) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		"SELECT 'country ' || code || ' ' || name FROM countries",
		"SELECT 'city ' || name || ' in ' || country_code FROM cities",
	} {
		var rows []string
		if err := n.DB().NewRaw(q).Scan(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		out = append(out, rows...)
	}
	slices.Sort(out)
	return out
}

func syncBoth(t testing.TB, a, b *peer.Node) {
	t.Helper()
	mustSync(t, a, b.AsPeer())
	mustSync(t, b, a.AsPeer())
}

func wantCountries(t testing.TB, step string, want []string, nodes ...*peer.Node) {
	t.Helper()
	for i, n := range nodes {
		if got := countryContents(t, n); !slices.Equal(got, want) {
			t.Fatalf("%s: node %d holds %q, want %q", step, i, got, want)
		}
	}
	sameDigests(t, nodes...)
}

// TestTextKeys: a text primary key is the application's value, the same
// on every node: it travels with the row (before, the apply left it out,
// as it leaves out a local integer key, and the insert failed on the
// missing key). It is the row's identity, as a UUID key is: a key changed
// on one node is a delete of the old key and an insert of the new one
// everywhere (the child moved by ON UPDATE CASCADE follows), two nodes
// inserting the same key write the same row (the later write wins), and a
// reference to a text-keyed row travels as the key. From a SQLite node to
// SQLite and to PostgreSQL.
func TestTextKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := countryNode(t, dbtest.KindSQLite), countryNode(t, kind)
			insert(t, a, &Country{Code: "fr", Name: "France"})
			insert(t, a, &City{CountryCode: "fr", Name: "Paris"})
			syncBoth(t, a, b)
			wantCountries(t, "insert", []string{"city Paris in fr", "country fr France"}, a, b)

			tick()
			exec(t, a, "UPDATE countries SET code = 'fx' WHERE code = 'fr'")
			syncBoth(t, a, b)
			wantCountries(t, "key change", []string{"city Paris in fx", "country fx France"}, a, b)

			tick()
			insert(t, b, &City{CountryCode: "fx", Name: "Lyon"})
			exec(t, b, "UPDATE countries SET name = 'France métropolitaine' WHERE code = 'fx'")
			syncBoth(t, b, a)
			wantCountries(t, "edits on the other node",
				[]string{"city Lyon in fx", "city Paris in fx", "country fx France métropolitaine"}, a, b)

			// The same key inserted on both nodes: one row, the later
			// write wins.
			tick()
			insert(t, a, &Country{Code: "de", Name: "Germany (a)"})
			tick()
			insert(t, b, &Country{Code: "de", Name: "Germany (b)"})
			insert(t, b, &City{CountryCode: "de", Name: "Berlin"})
			syncBoth(t, a, b)
			wantCountries(t, "the same key on both nodes", []string{
				"city Berlin in de", "city Lyon in fx", "city Paris in fx",
				"country de Germany (b)", "country fx France métropolitaine",
			}, a, b)

			tick()
			exec(t, b, "DELETE FROM countries WHERE code = 'fx'")
			syncBoth(t, b, a)
			wantCountries(t, "delete", []string{"city Berlin in de", "country de Germany (b)"}, a, b)

			// A key that looks like no UUID, and one that is one.
			for i, code := range []string{"with space/ü", "0b5e3c9a-2f7e-4f5a-9c31-1f0a5c0de111"} {
				insert(t, b, &Country{Code: code, Name: fmt.Sprint(i)})
			}
			syncBoth(t, b, a)
			sameDigests(t, a, b)
		})
	}
}

// TestTextKeysInstalledBefore: a release before text keys were identities
// gave a text-keyed table the sync_uuid column and recorded its rows'
// versions under it. Opened again, the node keeps those versions under
// the rows' keys (not new versions of its own, which would win over
// other nodes' edits, nor versions of identities no row has) and syncs.
func TestTextKeysInstalledBefore(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := countryNode(t, kind)
			insert(t, a, &Country{Code: "fr", Name: "France"})
			type version struct {
				RowID string `bun:"row_id"`
				HLC   int64  `bun:"hlc"`
			}
			versions := func() []version {
				var vs []version
				if err := a.DB().NewRaw("SELECT row_id, hlc FROM sync_lww WHERE content_type_id = (SELECT content_type_id FROM sync_lww WHERE row_id = 'fr') ORDER BY row_id").Scan(ctx, &vs); err != nil {
					t.Fatal(err)
				}
				return vs
			}
			want := versions()
			// The earlier release's state: the row's identity in sync_uuid.
			const old = "3f0c2a8e-5b1d-4e6f-9a7c-2d8b4e6f1a3c"
			exec(t, a, "ALTER TABLE countries ADD COLUMN sync_uuid TEXT")
			exec(t, a, "UPDATE countries SET sync_uuid = ? WHERE code = 'fr'", old)
			exec(t, a, "UPDATE sync_lww SET row_id = ? WHERE row_id = 'fr'", old)
			tick()
			a = synctest.NewNodeWith(t, a.DB(), []any{(*Country)(nil), (*City)(nil)}, nil)
			if got := versions(); !slices.Equal(got, want) {
				t.Fatalf("versions after the upgrade: %v, want %v", got, want)
			}
			b := countryNode(t, dbtest.KindSQLite)
			syncBoth(t, a, b)
			wantCountries(t, "sync after the upgrade", []string{"country fr France"}, a, b)
		})
	}
}

// TestTextKeysInstalledBeforeTrigger: on PostgreSQL, a release before
// text keys were identities gave a text-keyed table, besides the
// sync_uuid column, a trigger filling it (sync_lww_id, function
// sync_lww_id_<table>). Opened again, the node drops that trigger and its
// function: the column is no longer the row's identity, and an
// application that drops it then must still be able to insert (the
// trigger kept, every insert failed on the missing column).
func TestTextKeysInstalledBeforeTrigger(t *testing.T) {
	t.Parallel()
	a := countryNode(t, dbtest.KindPostgres)
	// The earlier release's state: the identity column and its trigger,
	// as that release wrote them.
	exec(t, a, "ALTER TABLE countries ADD COLUMN sync_uuid TEXT")
	exec(t, a, `CREATE FUNCTION sync_lww_id_countries() RETURNS trigger LANGUAGE plpgsql AS $dbsync$
BEGIN
  NEW.sync_uuid := COALESCE(NEW.sync_uuid, gen_random_uuid()::text);
  RETURN NEW;
END$dbsync$`)
	exec(t, a, "CREATE TRIGGER sync_lww_id BEFORE INSERT OR UPDATE OF sync_uuid ON countries FOR EACH ROW EXECUTE FUNCTION sync_lww_id_countries()")
	a = synctest.NewNodeWith(t, a.DB(), []any{(*Country)(nil), (*City)(nil)}, nil)
	var left []string
	if err := a.DB().NewRaw(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'countries'::regclass AND tgname = 'sync_lww_id'
UNION ALL SELECT proname FROM pg_proc WHERE proname = 'sync_lww_id_countries' AND pronamespace = current_schema()::regnamespace`).Scan(ctx, &left); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the earlier release's identity trigger is left: %q", left)
	}
	exec(t, a, "ALTER TABLE countries DROP COLUMN sync_uuid")
	insert(t, a, &Country{Code: "fr", Name: "France"})
	b := countryNode(t, dbtest.KindSQLite)
	syncBoth(t, a, b)
	wantCountries(t, "sync after the column is dropped", []string{"country fr France"}, a, b)
}

// TestTextKeysNullKeyInstalledBefore: on SQLite, a release before text
// keys were identities applied a peer's text-keyed rows without their
// keys, and SQLite stored them with a NULL key, under their sync_uuid
// identities. Opened again, the node opens (it failed: moving those
// versions under the rows' keys wrote a NULL row_id) and syncs; the rows
// with a NULL key are left as they are.
func TestTextKeysNullKeyInstalledBefore(t *testing.T) {
	t.Parallel()
	a := countryNode(t, dbtest.KindSQLite)
	insert(t, a, &Country{Code: "fr", Name: "France"})
	// The earlier release's state: identities in sync_uuid, and a row
	// applied from a peer without its key.
	const fr, applied = "3f0c2a8e-5b1d-4e6f-9a7c-2d8b4e6f1a3c", "7d1e0b6a-4c2f-4a8e-8b3d-5e9f1a2c4d6b"
	exec(t, a, "ALTER TABLE countries ADD COLUMN sync_uuid TEXT")
	exec(t, a, "UPDATE countries SET sync_uuid = ? WHERE code = 'fr'", fr)
	exec(t, a, "UPDATE sync_lww SET row_id = ? WHERE row_id = 'fr'", fr)
	insert(t, a, &Country{Code: "de", Name: "Germany"})
	exec(t, a, "UPDATE sync_lww_capture SET capture = 0")
	exec(t, a, "UPDATE countries SET code = NULL, sync_uuid = ? WHERE code = 'de'", applied)
	exec(t, a, "UPDATE sync_lww SET row_id = ? WHERE row_id = 'de'", applied)
	exec(t, a, "UPDATE sync_lww_capture SET capture = 1")
	tick()
	a = synctest.NewNodeWith(t, a.DB(), []any{(*Country)(nil), (*City)(nil)}, nil)
	var ids []string
	if err := a.DB().NewRaw("SELECT row_id FROM sync_lww ORDER BY row_id").Scan(ctx, &ids); err != nil {
		t.Fatal(err)
	}
	if want := []string{fr, applied}; !slices.Contains(ids, "fr") || slices.Contains(ids, fr) || !slices.Contains(ids, applied) {
		t.Fatalf("versions after the upgrade: %q; want fr's under its key, the NULL-keyed row's kept (%s)", ids, want[1])
	}
	b := countryNode(t, dbtest.KindSQLite)
	insert(t, b, &Country{Code: "it", Name: "Italy"})
	syncBoth(t, a, b)
	if got := countryContents(t, b); !slices.Equal(got, []string{"country fr France", "country it Italy"}) {
		t.Fatalf("the other node holds %q", got)
	}
}
