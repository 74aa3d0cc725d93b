package stream

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestNegativeCommitRefused: a COMMIT frame whose count of versions
// applied is negative ends the session with ErrFrame, as any malformed
// frame does. Before, the session succeeded, its Report's Sent the
// other end's negative number ("sent -7 version(s)").
func TestNegativeCommitRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			victim := synctest.NewNode(t, kind, nil)
			for _, n := range []int{-1, -7, -1 << 62} {
				done, _ := json.Marshal(struct{}{})
				applied, _ := json.Marshal(commit{Applied: n})
				// (The wait only bounds a hang.)
				err := hostilePeer(t, victim, &Config{Secret: hostileSecret}, time.Minute, func(send func(byte, []byte) error) {
					if send(frameDone, done) == nil {
						_ = send(frameCommit, applied)
					}
				})
				if !errors.Is(err, ErrFrame) {
					t.Errorf("COMMIT of %d: victim: %v, want ErrFrame", n, err)
				}
			}
		})
	}
}
