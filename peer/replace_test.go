package peer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestReplaceReachesPeers: rows SQLite's REPLACE deletes on a node (one
// holding the new row's unique name, the old row of a key replaced) are
// deleted on its peers too, and the replaced row arrives as the node has
// it; on PostgreSQL and SQLite peers.
func TestReplaceReachesPeers(t *testing.T) {
	t.Parallel()
	for _, other := range dbtest.Kinds {
		t.Run(other, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, other, nil)
			exec(t, a, "INSERT INTO lists (id, name) VALUES (1, 'home'), (2, 'work'), (3, 'shop')")
			if _, err := a.Sync(ctx, b.AsPeer()); err != nil {
				t.Fatal(err)
			}
			exec(t, a, "INSERT OR REPLACE INTO lists (id, name) VALUES (4, 'work')") // deletes list 2
			exec(t, a, "REPLACE INTO lists (id, name) VALUES (3, 'market')")
			if _, err := a.Sync(ctx, b.AsPeer()); err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := b.DB().NewSelect().Model((*testmodels.List)(nil)).ColumnExpr("name").Order("name").Scan(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if want := []string{"home", "market", "work"}; strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("peer holds lists %q, want %q", got, want)
			}
			if n := count(t, b, "lists"); n != 3 {
				t.Fatalf("peer holds %d lists, want 3", n)
			}
		})
	}
}

// TestNewRecursiveTriggersOff: New refuses a SQLite database with
// recursive triggers off (whose REPLACE would delete rows without a
// tombstone) with dbsync.ErrDatabaseSettings, before it changes it.
func TestNewRecursiveTriggersOff(t *testing.T) {
	t.Parallel()
	db := dbtest.SQLiteWithout(t, "recursive_triggers")
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = peer.New(ctx, db, reg, nil)
	if !errors.Is(err, dbsync.ErrDatabaseSettings) || !strings.Contains(err.Error(), "recursive_triggers(1)") {
		t.Fatalf("New: %v, want ErrDatabaseSettings naming recursive_triggers(1)", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sync_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("New created %d objects before refusing", n)
	}
}
