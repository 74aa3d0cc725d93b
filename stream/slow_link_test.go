package stream_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/stream"
)

// slowLink is a connection whose writes leave 16 KiB at a time, one piece
// every 40 ms (about 400 KiB/s): a slow link that never stalls.
type slowLink struct{ net.Conn }

func (c slowLink) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 16<<10)
		time.Sleep(40 * time.Millisecond)
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// TestSlowLinkLargePage: a page that takes longer than IdleTimeout to
// cross a slow link that never stalls (here 2 MiB at 400 KiB/s, with 2.5
// s idle: room for a busy machine to prepare the page) syncs:
// IdleTimeout bounds a wait without progress, not a frame's whole
// transfer. Before, each frame had to be written and read whole within
// IdleTimeout, so such a page failed every session on both ends (a 32
// MiB page of peer.Config.MaxBatchBytes needed over 1 MiB/s at the
// default 30 s) and its rows never reached the other end.
func TestSlowLinkLargePage(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, p.a), newNode(t, p.b)
			notes := make([]*testmodels.Note, 40)
			for i := range notes {
				notes[i] = note(fmt.Sprintf("%d %s", i, strings.Repeat("x", 48<<10)))
			}
			insert(t, a, &notes)
			c1, c2 := net.Pipe()
			c := &stream.Config{Secret: secret, IdleTimeout: 2500 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			errs := make(chan error, 1)
			go func() {
				_, err := stream.Sync(ctx, c2, b, c)
				errs <- err
			}()
			start := time.Now()
			repA, errA := stream.Sync(ctx, slowLink{c1}, a, c)
			errB := <-errs
			if errA != nil || errB != nil {
				t.Fatalf("session over a slow link (%s): a: %v; b: %v", time.Since(start), errA, errB)
			}
			if repA.Sent != len(notes) {
				t.Fatalf("sent %d versions, want %d", repA.Sent, len(notes))
			}
			converged(t, a, b)
		})
	}
}
