package peerhttp

import (
	"errors"
	"strings"
	"sync"
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
	s := newStages(t.TempDir(), time.Hour, 1<<30)
	clock := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return clock }
	first := func(from uuid.UUID) uuid.UUID {
		t.Helper()
		upload := uuid.New()
		if got, whole, err := s.add(from, &part{upload: upload, more: true}, 3, strings.NewReader("abc")); err != nil || got != 3 || whole != nil {
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
	if _, _, err := s.add(gone, &part{upload: goneUpload, offset: 3}, 2, strings.NewReader("de")); !errors.Is(err, dbsync.ErrPushIncomplete) {
		t.Fatalf("the dropped body's last part: %v, want dbsync.ErrPushIncomplete", err)
	}
	// A further part keeps a body alive: its age counts from it.
	clock = clock.Add(50 * time.Minute) // kept's latest part is 80 minutes old
	if _, _, err := s.add(kept, &part{upload: keptUpload, offset: 3, more: true}, 2, strings.NewReader("de")); !errors.Is(err, dbsync.ErrPushIncomplete) {
		t.Fatalf("a part 80 minutes after the body's latest: %v, want dbsync.ErrPushIncomplete", err)
	}
	again := first(kept)
	clock = clock.Add(50 * time.Minute)
	if got, _, err := s.add(kept, &part{upload: again, offset: 3, more: true}, 2, strings.NewReader("de")); err != nil || got != 5 {
		t.Fatalf("a part 50 minutes after the body's latest: %d, %v", got, err)
	}
	clock = clock.Add(50 * time.Minute) // 100 minutes after its first part, 50 after its latest
	first(uuid.New())
	if h := s.held(kept); h == nil || h.Received != 5 {
		t.Fatalf("a body whose latest part is 50 minutes old: held %+v", h)
	}
}

// TestStagedConcurrent: parts of several peers, and of one upload from
// several connections at once, keep the bytes staged within the bound,
// and every refused, replaced, dropped or applied body gives its bytes
// back (run with -race). Before, nothing counted the bytes staged.
func TestStagedConcurrent(t *testing.T) {
	t.Parallel()
	const bound = 64
	s := newStages(t.TempDir(), time.Hour, bound)
	peers := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	uploads := []uuid.UUID{uuid.New(), uuid.New()}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				from := peers[(g+i)%len(peers)]
				pt := &part{upload: uploads[i%len(uploads)], offset: int64(i%3) * 8, more: i%5 != 0}
				_, whole, err := s.add(from, pt, 8, strings.NewReader("abcdefgh"))
				if err != nil && !errors.Is(err, dbsync.ErrPushIncomplete) && !errors.Is(err, dbsync.ErrBusy) {
					t.Errorf("part: %v", err)
				}
				s.mu.Lock()
				if s.used > bound || s.used < 0 {
					t.Errorf("%d bytes staged, bound %d", s.used, bound)
				}
				s.mu.Unlock()
				if whole != nil {
					s.held(from)
					s.discard(whole)
				}
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	s.sweep(time.Now().Add(2 * time.Hour))
	used, left := s.used, len(s.by)
	s.mu.Unlock()
	if used != 0 || left != 0 {
		t.Fatalf("after every body left: %d bytes counted, %d bodies", used, left)
	}
}

// TestMaxParts: a body that would take more than MaxParts requests at
// the part limit is refused with dbsync.ErrTooLarge naming the bound,
// before any is sent; one of exactly MaxParts parts is not.
func TestMaxParts(t *testing.T) {
	t.Parallel()
	p := &Peer{}
	h := &Hello{MaxBody: 4096}
	if err := p.checkParts(h, 4096, MaxParts*4096); err != nil {
		t.Fatalf("a body of %d parts: %v", MaxParts, err)
	}
	err := p.checkParts(h, 4096, MaxParts*4096+1)
	if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "MaxParts") {
		t.Fatalf("a body of %d parts: %v, want dbsync.ErrTooLarge naming MaxParts", MaxParts+1, err)
	}
}
