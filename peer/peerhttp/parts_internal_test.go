package peerhttp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
)

// TestStagedSwept: the parts of a body are dropped when a part of any
// peer arrives more than StagedTTL after the body's latest part (a peer
// that never came back), not before; the dropped body's next part is
// refused with dbsync.ErrPushIncomplete. Before, they stayed until the
// process ended.
func TestStagedSwept(t *testing.T) {
	t.Parallel()
	s := newStages(t.TempDir(), time.Hour)
	clock := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return clock }
	first := func(from uuid.UUID) uuid.UUID {
		t.Helper()
		upload := uuid.New()
		if got, whole, err := s.add(from, &part{upload: upload, more: true}, strings.NewReader("abc")); err != nil || got != 3 || whole != nil {
			t.Fatalf("first part: %d, %v, %v", got, whole, err)
		}
		return upload
	}
	gone, kept := uuid.New(), uuid.New()
	goneUpload := first(gone)
	clock = clock.Add(40 * time.Minute)
	keptUpload := first(kept)
	if s.held(gone) == nil {
		t.Fatal("a body 40 minutes old was dropped, within a TTL of an hour")
	}
	clock = clock.Add(30 * time.Minute) // gone's is 70 minutes old, kept's 30
	first(uuid.New())
	if s.held(gone) != nil {
		t.Fatal("a body 70 minutes old was kept, past a TTL of an hour")
	}
	if h := s.held(kept); h == nil || h.Upload != keptUpload.String() || h.Received != 3 {
		t.Fatalf("a body 30 minutes old: held %+v", h)
	}
	if _, _, err := s.add(gone, &part{upload: goneUpload, offset: 3}, strings.NewReader("de")); !errors.Is(err, dbsync.ErrPushIncomplete) {
		t.Fatalf("the dropped body's last part: %v, want dbsync.ErrPushIncomplete", err)
	}
	// A further part keeps a body alive: its age counts from it.
	clock = clock.Add(50 * time.Minute) // kept's latest part is 80 minutes old
	if _, _, err := s.add(kept, &part{upload: keptUpload, offset: 3, more: true}, strings.NewReader("de")); !errors.Is(err, dbsync.ErrPushIncomplete) {
		t.Fatalf("a part 80 minutes after the body's latest: %v, want dbsync.ErrPushIncomplete", err)
	}
	again := first(kept)
	clock = clock.Add(50 * time.Minute)
	if got, _, err := s.add(kept, &part{upload: again, offset: 3, more: true}, strings.NewReader("de")); err != nil || got != 5 {
		t.Fatalf("a part 50 minutes after the body's latest: %d, %v", got, err)
	}
	clock = clock.Add(50 * time.Minute) // 100 minutes after its first part, 50 after its latest
	first(uuid.New())
	if h := s.held(kept); h == nil || h.Received != 5 {
		t.Fatalf("a body whose latest part is 50 minutes old: held %+v", h)
	}
}
