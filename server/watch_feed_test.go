package server

import (
	"log/slog"
	"testing"
	"time"
)

// TestFeedReadBeforeLoss: a read of the latest version begun before
// another read saw the database lose versions must not bring the lost
// version back when it answers after it. It did: the listener's read,
// answered just before a restore, landed after Watch's read had seen the
// loss, so the feed held the lost version again and a node watching from
// the database's latest was answered "changed" at once, in a loop, until
// the next read (TestWatchVersionsLost failed so on a busy machine).
func TestFeedReadBeforeLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale int64 // what the read begun before the loss answers
		then  int64 // what a read begun after it answers
		want  int64 // the feed's latest version after both
	}{
		{"lost version", 3, 1, 1},
		{"a version between", 2, 1, 1},
		{"new versions after the loss", 3, 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeed(slog.New(slog.DiscardHandler), time.Second)
			f.advance(3)
			_, err := f.read(func() (int64, error) {
				// Meanwhile versions 2 and 3 are lost; another read sees it.
				if v, err := f.read(func() (int64, error) { return 1, nil }); err != nil || v != 1 {
					t.Fatalf("the read after the loss: %d %v, want 1", v, err)
				}
				return tc.stale, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.current(); got != 1 {
				t.Fatalf("feed at %d after a read begun before the loss answered %d, want 1", got, tc.stale)
			}
			if v, err := f.read(func() (int64, error) { return tc.then, nil }); err != nil || v != tc.want {
				t.Fatalf("a read after the loss answering %d: feed at %d %v, want %d", tc.then, v, err, tc.want)
			}
		})
	}
}
