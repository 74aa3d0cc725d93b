package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
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

// propsRow has a map column, which the server sends as encoding/json
// writes it: <, > and & escaped as \u003c, \u003e, \u0026 (six bytes for
// one).
type propsRow struct {
	bun.BaseModel `bun:"table:props_rows"`

	ID    int64          `bun:"id,pk"`
	Props map[string]any `bun:"props"`
}

// TestPushRowTooLargeToSend: a pushed row that, as the server sends it,
// passes the longest line a client reads (twice the line budget:
// protocol.MaxLineBytes) is refused with a *dbsync.ValueError (400)
// naming table, key and column, and nothing is written. Before, a row
// small as pushed but six times larger as sent (a map value of <) was
// accepted, and every pull carrying it failed with ErrTooLarge, for
// every node, until someone deleted it.
func TestPushRowTooLargeToSend(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			mods := []any{(*propsRow)(nil)}
			f := &fixture{t: t, kind: kind, Server: synctest.NewServerWith(t, dbtest.Open(t, kind), synctest.CreateTables(mods...), mods, nil)}
			f.Srv.SetLineBudget(4000) // lines of at most 8000 bytes
			a, b := f.register(), f.register()
			row := func(id int64, v string) json.RawMessage {
				raw, err := json.Marshal(map[string]any{"id": id, "props": map[string]string{"v": v}})
				if err != nil {
					t.Fatal(err)
				}
				// As a node sends it: < unescaped.
				return bytes.ReplaceAll(raw, []byte(`\u003c`), []byte("<"))
			}
			for _, c := range []struct {
				name  string
				value string
				ok    bool
			}{
				{"small", strings.Repeat("x", 100), true},
				{"large as sent", strings.Repeat("<", 2000), false}, // 2 KB pushed, 12 KB sent
				{"large as pushed", strings.Repeat("x", 9000), false},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := f.state()
					p := newPush(ptr(f.latest())).op("props_rows", "1", models.Insert, row(1, c.value))
					_, err := f.Srv.Push(ctx, a.id, p.Ptr())
					var ve *dbsync.ValueError
					switch {
					case c.ok && err != nil:
						t.Fatalf("push: %v", err)
					case c.ok:
						mustPull(t, f.Srv, b.id, &protocol.PullRequest{})
						if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(f.latest())).del("props_rows", 1).Ptr()); err != nil {
							t.Fatal(err)
						}
					case err == nil:
						_, perr := pull(t, f.Srv, b.id, &protocol.PullRequest{})
						t.Fatalf("push accepted (then a pull: %v), want a ValueError (bad request) naming props_rows 1 props", perr)
					case !errors.As(err, &ve) || !errors.Is(err, dbsync.ErrBadRequest) || ve.Table != "props_rows" || ve.Key != "1" || ve.Column != "props":
						t.Fatalf("push: %v, want a ValueError (bad request) naming props_rows 1 props", err)
					default:
						f.mustUnchanged(before, "refused push")
						mustPull(t, f.Srv, b.id, &protocol.PullRequest{})
					}
				})
			}
		})
	}
}
