package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestLinesWithinBudget: chunks are bounded in operations, not bytes, so
// a chunk of large rows (a picture each) made one line past
// protocol.MaxLineBytes, which every client refuses: the node could never
// pull, repair or reset. A pull chunk or repair page whose rows pass the
// server's line budget goes in several lines, each within it (here 5 KB:
// 20 rows of 2 KB, a chunk of 1000 operations), and together they hold
// every row once.
func TestLinesWithinBudget(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			f.Srv.SetLineBudget(5000)
			a, b := f.register(), f.register()
			p := newPush(nil)
			for i := int64(1); i <= 20; i++ {
				p.list(models.Insert, i, fmt.Sprintf("%02d", i)+strings.Repeat("x", 2000))
			}
			if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			check := func(what string, msgs []*protocol.Message) {
				t.Helper()
				seen := map[string]int{}
				lines := 0
				for _, m := range msgs {
					size := 0
					for _, rows := range m.Payload {
						for _, r := range rows {
							size += len(r)
							seen[string(r)[:20]]++
						}
					}
					for _, r := range m.Rows {
						size += len(r)
						seen[string(r)[:20]]++
					}
					if size == 0 {
						continue
					}
					lines++
					if size > 5000 {
						t.Fatalf("%s: a %s line holds %d bytes of rows, over the budget of 5000", what, m.Type, size)
					}
				}
				if len(seen) != 20 || lines < 10 {
					t.Fatalf("%s: %d distinct rows in %d lines, want 20 rows in 10 lines or more", what, len(seen), lines)
				}
				for r, n := range seen {
					if n != 1 {
						t.Fatalf("%s: row %s sent %d times", what, r, n)
					}
				}
			}
			check("pull", mustPull(t, f.Srv, b.id, &protocol.PullRequest{ChunkSize: 1000}))
			var repaired []*protocol.Message
			if err := f.Srv.Repair(ctx, b.id, func(m *protocol.Message) error {
				c := *m
				repaired = append(repaired, &c)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			check("repair", repaired)
		})
	}
}
