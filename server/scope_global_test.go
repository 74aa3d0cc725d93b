package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestScopeInGlobalHeld: held keys of a global table (tags), as a node
// lists them whose last header named the table scoped (the rules changed
// since), bring the tags the node lacks as scope_in lines, at most a
// chunk a line, read over pages of keys; a held key the server lacks
// moves nothing out, and the header does not name tags. Tags the pull's
// chunks write do not come again. A server without scopes ignores held
// keys.
func TestScopeInGlobalHeld(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			scoped := newScopedFixture(t, kind)
			plain := newFixtureWithSchema(t, kind, nil, testmodels.CreateScoped, testmodels.Scoped()...)
			for _, f := range []*fixture{scoped, plain} {
				for i := 1; i <= 12; i++ {
					if _, err := f.DB.ExecContext(ctx, "INSERT INTO tags (id, name) VALUES (?, ?)", i, fmt.Sprint("t", i)); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := f.Srv.Seal(ctx); err != nil {
					t.Fatal(err)
				}
			}
			held := func() map[string][]string {
				return map[string][]string{"projects": {}, "tasks": {}, "members": {}, "tags": {"2", "5", "99"}}
			}
			ann := scoped.registerAs("ann")
			var in []string
			msgs := mustPull(t, scoped.Srv, ann.id, &protocol.PullRequest{LatestVersionID: ptr(scoped.latest()), ChunkSize: 5, Held: held()})
			for _, m := range msgs {
				switch m.Type {
				case protocol.MsgHeader:
					if slices.Contains(m.Scoped, "tags") {
						t.Fatalf("the header names tags scoped: %v", m.Scoped)
					}
				case protocol.MsgScopeOut:
					t.Fatalf("a scope_out line: %s %v", m.Table, m.Keys)
				case protocol.MsgScopeIn:
					if m.Table != "tags" || len(m.Rows) > 5 {
						t.Fatalf("a scope_in line of %d rows of %s, want tags, at most 5", len(m.Rows), m.Table)
					}
					for _, r := range m.Rows {
						var row map[string]any
						if err := json.Unmarshal(r, &row); err != nil {
							t.Fatal(err)
						}
						in = append(in, fmt.Sprint(row["id"]))
					}
				case protocol.MsgEnd:
					if m.ScopeInCount != int64(len(in)) {
						t.Fatalf("the end line counts %d rows in, the lines carry %d", m.ScopeInCount, len(in))
					}
				}
			}
			if want := []string{"1", "3", "4", "6", "7", "8", "9", "10", "11", "12"}; !slices.Equal(in, want) {
				t.Fatalf("tags moved in %v, want %v", in, want)
			}
			// From version 0 every tag comes as an operation: none again.
			for _, m := range mustPull(t, scoped.Srv, ann.id, &protocol.PullRequest{LatestVersionID: ptr(0), ChunkSize: 5, Held: held()}) {
				if m.Type == protocol.MsgScopeIn || m.Type == protocol.MsgScopeOut {
					t.Fatalf("a pull from version 0: a %s line of %s", m.Type, m.Table)
				}
			}
			n := plain.register()
			for _, m := range mustPull(t, plain.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(plain.latest()), ChunkSize: 5, Held: held()}) {
				if m.Type == protocol.MsgScopeIn || m.Type == protocol.MsgScopeOut || len(m.Scoped) > 0 {
					t.Fatalf("a server without scopes: a %s line (%s, scoped %v)", m.Type, m.Table, m.Scoped)
				}
			}
		})
	}
}

// TestHeldReadHeader: a server with scopes says in the pull header that
// it read the request's held keys (held_read), also of a table it holds
// no node to in part (tags, global): the node then knows the rows of it
// it lacks come as scope_in lines. A server without scopes, which
// ignores held keys, does not say it.
func TestHeldReadHeader(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			scoped := newScopedFixture(t, kind)
			plain := newFixtureWithSchema(t, kind, nil, testmodels.CreateScoped, testmodels.Scoped()...)
			header := func(f *fixture, n node, held map[string][]string) *protocol.Message {
				t.Helper()
				msgs := mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(f.latest()), Held: held})
				if len(msgs) == 0 || msgs[0].Type != protocol.MsgHeader {
					t.Fatalf("no header: %v", msgs)
				}
				return msgs[0]
			}
			all := map[string][]string{"projects": {}, "tasks": {}, "members": {}, "tags": {}}
			ann := scoped.registerAs("ann")
			if h := header(scoped, ann, all); !h.HeldRead {
				t.Errorf("a scoped server's header without held_read for a request with held keys: %+v", h)
			}
			n := plain.register()
			if h := header(plain, n, all); h.HeldRead {
				t.Errorf("a server without scopes says held_read: %+v", h)
			}
			if h := header(plain, n, nil); h.HeldRead {
				t.Errorf("a server without scopes says held_read: %+v", h)
			}
		})
	}
}
