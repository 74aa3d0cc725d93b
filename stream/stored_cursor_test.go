package stream_test

import (
	"testing"
)

// TestStoredMalformedCursor: a node's stored cursor for the other end
// whose epoch is not one a node hands out (recorded unchecked by an
// earlier release) was sent as it was in its CURSOR frame, and the other
// end ended every session (bad cursor). The node now reads the other
// end's whole feed again, once, and the sessions go on.
func TestStoredMalformedCursor(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, p.a), newNode(t, p.b)
			insert(t, a, note("one"))
			pipeSession(t, a, b, cfg(), cfg()).ok(t)
			exec(t, b, "UPDATE sync_lww_cursor_epochs SET epoch = 'not-an-epoch' WHERE peer = ?", a.ID().String())
			insert(t, a, note("two"))
			for range 2 {
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
			}
			converged(t, a, b)
		})
	}
}
