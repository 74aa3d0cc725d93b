package peer_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestSpoolDirChecked: New refuses a Config.SpoolDir that is not an
// existing directory, before it changes the database, with an error
// naming the field (wrapping fs.ErrNotExist for a missing one); an empty
// one (os.TempDir) and a directory are accepted. Before, a wrong one was
// found only when a pull first spooled past 16 MiB of pages.
func TestSpoolDirChecked(t *testing.T) {
	t.Parallel()
	for _, c := range synctest.SpoolDirCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, dbtest.KindSQLite, "testmodels", testmodels.CreateSchema)
			reg, err := dbsync.Track(db, testmodels.All()...)
			if err != nil {
				t.Fatal(err)
			}
			n, err := peer.New(ctx, db, reg, &peer.Config{SpoolDir: c.Dir})
			if !c.Bad {
				if err != nil {
					t.Fatalf("SpoolDir %q: %v", c.Dir, err)
				}
				if n == nil {
					t.Fatal("no node")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "peer: Config.SpoolDir") {
				t.Fatalf("SpoolDir %q: %v, want an error naming peer: Config.SpoolDir", c.Dir, err)
			}
			if c.NotExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("SpoolDir %q: errors.Is(%v, fs.ErrNotExist) = %v, want %v", c.Dir, err, !c.NotExist, c.NotExist)
			}
			var nodes int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sync_lww_node").Scan(&nodes); err != nil {
				t.Fatal(err)
			}
			if nodes != 0 {
				t.Error("New made the database a node before refusing its SpoolDir")
			}
		})
	}
}
