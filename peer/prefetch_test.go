package peer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/peer"
)

// TestPrefetch: the pages a SQLite node reads from a remote peer before
// its transaction opens come back in order and unchanged, those past
// PrefetchMemory from a spool file (before, every page stayed in
// memory: a backlog of 160 MB grew the process by 443 MiB,
// TestBacklogMemory in peerhttp); a failure of the source fails the
// prefetch.
func TestPrefetch(t *testing.T) {
	t.Parallel()
	row := json.RawMessage(`{"body":"` + strings.Repeat("r", 1<<20) + `"}`)
	var pages []*peer.Batch
	for i := range peer.PrefetchMemory>>20 + 4 {
		pages = append(pages, &peer.Batch{
			Changes: []peer.Change{
				{Table: "notes", ID: fmt.Sprint("n", i), HLC: int64(100 + i), Node: "a", Row: row, Seq: int64(2*i + 1)},
				{Table: "notes", ID: fmt.Sprint("d", i), HLC: int64(200 + i), Node: "b", Deleted: true, Seq: int64(2*i + 2)},
			},
			Last: int64(2*i + 2), More: true, Epoch: "0b7d7e0c-1d8a-4c8e-9d1e-3f6f0c2b9a11", Own: i%2 == 0,
		})
	}
	pages[len(pages)-1].More = false
	// Full and PurgedHLC on a page kept in memory and on a spooled one.
	pages[0].Full, pages[0].PurgedHLC = true, 7
	pages[len(pages)-1].Full, pages[len(pages)-1].PurgedHLC = true, 9
	source := func(fail error) func() (*peer.Batch, error) {
		i := 0
		return func() (*peer.Batch, error) {
			if i == len(pages) {
				return nil, fail
			}
			i++
			return pages[i-1], nil
		}
	}
	next, release, err := peer.Prefetch(source(nil), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	copies := 0
	for i, want := range pages {
		got, err := next()
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		// Rows compare as JSON values: a spooled page's raw rows come
		// back compacted (they are here already).
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("page %d differs: %+v", i, got.Changes[1])
		}
		if got != want {
			copies++
		}
	}
	if got, err := next(); got != nil || err != nil {
		t.Fatalf("after the last page: %v, %v", got, err)
	}
	if copies == 0 || copies == len(pages) {
		t.Errorf("%d of %d pages read back from the spool, want those past %d MiB", copies, len(pages), peer.PrefetchMemory>>20)
	}
	boom := errors.New("boom")
	if _, _, err := peer.Prefetch(source(boom), ""); !errors.Is(err, boom) {
		t.Fatalf("a failing source: %v", err)
	}
}
