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

// TestNewDeferrableKey: New refuses, on PostgreSQL, a table whose key is
// its identity (UUID or text) and unique only under a DEFERRABLE
// constraint. One statement could then swap two rows' keys, recorded row
// by row as "tombstone 1, version 2, tombstone 2, version 1": key 2 ended
// as a tombstone though its row exists, and peers deleted it.
func TestNewDeferrableKey(t *testing.T) {
	t.Parallel()
	db := dbtest.Postgres(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE notes (id uuid PRIMARY KEY DEFERRABLE, body text NOT NULL,
created timestamptz NOT NULL, data bytea, score float8, tag text, count integer NOT NULL DEFAULT 0, meta jsonb)`); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = peer.New(ctx, db, reg, nil)
	if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "notes.id") {
		t.Fatalf("New: %v, want ErrInvalidModel naming notes.id", err)
	}
}
