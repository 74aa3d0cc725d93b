//go:build linux

package peer_test

import (
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestDigestMemory: Digest reads a table's rows a batch at a time, with
// memory for a batch, not for the table: it held every row's content of a
// table in a map before hashing them, as much memory as the table's data
// (a user checking that 100 MB of rows converged saw the process grow by
// 200 MiB). Not in parallel: it measures the process's peak resident
// memory (VmHWM, reset first). The notes are 8 KB, under 16 KiB: SQLite's
// allocator (modernc.org/memory) maps and unmaps every larger block on its
// own, which made the test spend most of its time in mmap and munmap. The
// old Digest (one map for the table) grew by about 120 MiB here, twice
// the table's data. A batch is 1,000 rows, an eighth of the table; the
// growth is a batch's rows, their copies and the garbage the collector has
// not reclaimed yet: 15–22 MiB on a quiet machine, once 32 MiB under the
// loaded suite (with 16 KB rows then, which failed the earlier bound of
// half the data).
func TestDigestMemory(t *testing.T) {
	const rows, size = 8000, 8000
	const data = rows * size
	n := newNode(t, dbtest.KindSQLite, nil)
	// The notes of synctest.InsertNotes (a number, then size bytes of
	// "n"), made by SQLite: building and parsing 8 MiB statements in Go
	// under the race detector took most of the insert's time.
	created := time.Now().UTC().Truncate(time.Microsecond)
	for done := 0; done < rows; done += 500 {
		exec(t, n, `WITH RECURSIVE i(k) AS (SELECT ? UNION ALL SELECT k + 1 FROM i WHERE k + 1 < ?)
			INSERT INTO notes (id, body, created) SELECT
				lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
					substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
				k || replace(hex(zeroblob(?)), '0', 'n'), ?
			FROM i`, done, min(done+500, rows), size/2, created)
	}
	var live int
	if err := n.DB().NewRaw("SELECT count(*) FROM sync_lww WHERE NOT deleted").Scan(ctx, &live); err != nil || live != rows {
		t.Fatalf("%d live versions (%v), want %d", live, err, rows)
	}
	want := digest(t, n) // the same digest, read again below
	var got string
	grew := dbtest.PeakGrowth(t, func() { got = digest(t, n) })
	t.Logf("digest of %d MiB of rows: peak resident memory grew by %d MiB", data>>20, grew>>20)
	if got != want {
		t.Errorf("digest %s, then %s", want, got)
	}
	if grew > data*3/4 {
		t.Errorf("peak resident memory grew by %d MiB for %d MiB of rows: want under three quarters", grew>>20, data>>20)
	}
}
