package peer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// peerEvents records the events of one node.
type peerEvents struct {
	mu  sync.Mutex
	evs []dbsync.Event
}

func (r *peerEvents) on(_ context.Context, e dbsync.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *peerEvents) take() []dbsync.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

// TestEvents: OnEvent receives one event per Sync and per Apply, with the
// peer, the versions that won and the outcome.
func TestEvents(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ra, rb := &peerEvents{}, &peerEvents{}
			a := newNode(t, kind, &peer.Config{OnEvent: ra.on})
			b := newNode(t, kind, &peer.Config{OnEvent: rb.on})
			insert(t, a, newNote("one"))
			insert(t, a, newNote("two"))
			insert(t, b, newNote("three"))
			mustSync(t, a, b.AsPeer())

			check := func(e dbsync.Event, op string, from uuid.UUID, ops int64) {
				t.Helper()
				if e.Op != op || e.Side != "peer" || e.Peer != from || e.Operations != ops || e.Err != nil || e.Duration <= 0 {
					t.Errorf("event %+v, want op %s peer %s operations %d", e, op, from, ops)
				}
			}
			// a pulled b's change (its apply), then b applied a's two.
			evs := ra.take()
			if len(evs) != 2 {
				t.Fatalf("a: %d events %+v, want apply and sync", len(evs), evs)
			}
			check(evs[0], "apply", b.ID(), 1)
			check(evs[1], "sync", b.ID(), 3)
			evs = rb.take()
			if len(evs) != 1 {
				t.Fatalf("b: %d events %+v, want one apply", len(evs), evs)
			}
			check(evs[0], "apply", a.ID(), 2)

			// A failed apply reports its error.
			refuse := errors.New("source failed")
			if _, err := a.Apply(t.Context(), b.ID(), func() (*peer.Batch, error) { return nil, refuse }); !errors.Is(err, refuse) {
				t.Fatalf("apply: %v", err)
			}
			evs = ra.take()
			if len(evs) != 1 || evs[0].Op != "apply" || !errors.Is(evs[0].Err, refuse) || evs[0].Operations != 0 {
				t.Fatalf("failed apply: events %+v", evs)
			}
		})
	}
}
