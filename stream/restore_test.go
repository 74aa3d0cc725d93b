package stream_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// A node restored from a backup reuses positions of its feed its peer
// read past, and lost writes its peer holds. The first session finds it:
// the peer takes the node's whole state; the node asks for its own
// versions in the next session, and then both hold the same rows.
func TestRestoredFromBackup(t *testing.T) {
	for _, p := range pairs {
		for _, writes := range []int{0, 3} { // 0: the other end's cursor stays past the feed
			t.Run(fmt.Sprintf("%s/%d writes after the restore", p.name, writes), func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, p.a), newNode(t, p.b)
				note := func(body string) *testmodels.Note { return &testmodels.Note{ID: uuid.New(), Body: body} }
				insert(t, a, note("before the backup"))
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
				restore := synctest.Backup(t, a.DB())
				insert(t, a, note("written after the backup"))
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
				restore()
				a = synctest.NewNodeWith(t, a.DB(), testmodels.All(), nil) // opened anew
				for i := range writes {
					insert(t, a, note(fmt.Sprintf("written after the restore %d", i)))
				}
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
				if s := converged(t, a, b); s.Counts["notes"] != 2+writes {
					t.Fatalf("nodes hold %d notes, want %d", s.Counts["notes"], 2+writes)
				}
			})
		}
	}
}
