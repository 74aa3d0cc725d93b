package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// inFlight is a push cut on its way: nodes a and b of srv hold list id
// ("one"), a renamed it "one-a" and pushed, and the push's request was
// held, its answer never coming (a's sync failed with a network error).
// The statements extra run on a before the push, which carries them too.
type inFlight struct {
	srv  *synctest.Server
	a, b *synctest.Client
	id   int64
	held *http.Request
	body []byte
}

func newInFlight(t *testing.T, kind string, extra ...string) *inFlight {
	t.Helper()
	ctx := context.Background()
	f := &inFlight{srv: synctest.NewServer(t, kind, nil)}
	var hold atomic.Bool
	hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if hold.Load() && strings.HasSuffix(r.URL.Path, "/push") {
			hold.Store(false)
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return nil, err
			}
			f.held, f.body = r.Clone(context.Background()), b
			return nil, errors.New("connection cut")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	f.a = synctest.NewClient(t, f.srv, "a", &client.Config{HTTPClient: hc})
	f.b = synctest.NewClient(t, f.srv, "b", nil)
	f.id = insertList(t, f.a.DB, "one")
	for _, n := range []*synctest.Client{f.a, f.b} {
		if _, err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	execSQL(t, f.a.DB, "UPDATE lists SET name = 'one-a'")
	for _, q := range extra {
		execSQL(t, f.a.DB, q)
	}
	hold.Store(true)
	if _, err := f.a.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
		t.Fatalf("a's sync: %v, want a network error", err)
	}
	return f
}

// deliver sends the held copy of the push and returns the server's answer.
func (f *inFlight) deliver(t *testing.T) (int, string) {
	t.Helper()
	f.held.Body, f.held.RequestURI = io.NopCloser(bytes.NewReader(f.body)), ""
	resp, err := http.DefaultTransport.RoundTrip(f.held)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(out)
}

// converged syncs a, b, a and checks both nodes equal the server.
func (f *inFlight) converged(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, n := range []*synctest.Client{f.a, f.b, f.a} {
		if _, err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := synctest.Dump(t, f.srv.DB, f.srv.Reg)
	for _, n := range []*synctest.Client{f.a, f.b} {
		if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
			t.Errorf("%s and the server differ:\n%s", n.Name, d)
		}
	}
}

// TestSettleWithPushInFlight: a node's push is cut (its copy still on its
// way) and the node takes the server's rows, discarding its change
// (DiscardPending, Repair with Force); the copy arrives after that, or
// before. The node ends equal to the server: a copy arriving after is
// refused (push_abandoned), one applied before is in the server's rows
// the node takes. Before the fix a copy arriving after was applied as a
// version of the node, whose operations its pulls leave out (merge.md
// A5): the node kept the value the copy overwrote on the server, for
// good.
func TestSettleWithPushInFlight(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name string
		run  func(ctx context.Context, f *inFlight) error
	}{
		{"discard", func(ctx context.Context, f *inFlight) error {
			return f.a.DiscardPending(ctx, []protocol.ScopeEntry{{Table: "lists", PK: strconv.FormatInt(f.id, 10)}})
		}},
		{"repair", func(ctx context.Context, f *inFlight) error {
			_, err := f.a.Repair(ctx, &client.RepairOptions{Force: true})
			return err
		}},
	}
	for _, kind := range dbtest.Kinds {
		for _, op := range ops {
			for _, tc := range []struct {
				name   string
				after  bool
				status int // the copy's answer
			}{
				{"copy_after", true, http.StatusConflict},
				{"copy_before", false, http.StatusOK},
			} {
				t.Run(kind+"/"+op.name+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					f := newInFlight(t, kind)
					deliver := func() {
						t.Helper()
						if status, out := f.deliver(t); status != tc.status {
							t.Fatalf("the copy: %d %s, want %d", status, out, tc.status)
						}
					}
					if !tc.after {
						deliver()
					}
					if err := op.run(ctx, f); err != nil {
						t.Fatal(err)
					}
					if tc.after {
						deliver()
					}
					f.converged(t)
				})
			}
		}
	}
}

// TestDiscardAfterLostInsert: a node's push inserting a row is applied
// but its answer lost, and the node gives the row's changes up
// (DiscardPending). The push is settled first, as a pull settles it:
// applied, the row is the server's, not one the node created and never
// pushed. Before the fix DiscardPending only asked about the push and
// then deleted the row as never pushed, while the server kept it; the
// node's pulls leave its own version out, so it never came back.
func TestDiscardAfterLostInsert(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newInFlight(t, kind, "INSERT INTO lists (name) VALUES ('two-a')")
			if status, out := f.deliver(t); status != http.StatusOK {
				t.Fatalf("the copy: %d %s", status, out)
			}
			var id int64
			if err := f.a.DB.QueryRowContext(ctx, "SELECT id FROM lists WHERE name = 'two-a'").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if err := f.a.DiscardPending(ctx, []protocol.ScopeEntry{{Table: "lists", PK: strconv.FormatInt(id, 10)}}); err != nil {
				t.Fatal(err)
			}
			f.converged(t)
			if got := count(t, f.a.DB, "lists", "name = 'two-a'"); got != 1 {
				t.Errorf("the node lost the row its applied push inserted: %d", got)
			}
		})
	}
}

// TestResetWithPushInFlight: Reset called on a node the trim did not leave
// behind, while a copy of its push is still on its way (the connection
// was cut): the reset keeps the push's changes pending, the node changes
// the row again and syncs, and then the copy arrives. It must not be
// applied over the node's newer push (the node's pulls leave out its own
// versions, merge.md A5): the node ends equal to the server.
func TestResetWithPushInFlight(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newInFlight(t, kind)
			if _, err := f.a.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			execSQL(t, f.a.DB, "UPDATE lists SET name = 'one-a2'")
			if _, err := f.a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			status, out := f.deliver(t) // the copy of the cut push arrives
			t.Logf("the copy: %d %s", status, out)
			f.converged(t)
			if got := count(t, f.srv.DB, "lists", "name = 'one-a2'"); got != 1 {
				t.Errorf("the server lost the node's latest change: %v", synctest.Dump(t, f.srv.DB, f.srv.Reg))
			}
		})
	}
}
