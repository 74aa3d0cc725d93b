package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

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
			srv := synctest.NewServer(t, kind, nil)
			var hold atomic.Bool
			var held *http.Request
			var body []byte
			hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if hold.Load() && strings.HasSuffix(r.URL.Path, "/push") {
					hold.Store(false)
					b, err := io.ReadAll(r.Body)
					if err != nil {
						return nil, err
					}
					held, body = r.Clone(context.Background()), b
					return nil, errors.New("connection cut")
				}
				return http.DefaultTransport.RoundTrip(r)
			})}
			a := synctest.NewClient(t, srv, "a", &client.Config{HTTPClient: hc})
			b := synctest.NewClient(t, srv, "b", nil)
			insertList(t, a.DB, "one")
			for _, n := range []*synctest.Client{a, b} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			execSQL(t, a.DB, "UPDATE lists SET name = 'one-a'")
			hold.Store(true)
			if _, err := a.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("a's sync: %v, want a network error", err)
			}
			if _, err := a.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			execSQL(t, a.DB, "UPDATE lists SET name = 'one-a2'")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			// The copy of the cut push arrives.
			held.Body, held.RequestURI = io.NopCloser(bytes.NewReader(body)), ""
			resp, err := http.DefaultTransport.RoundTrip(held)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("the copy: %d %s", resp.StatusCode, out)
			for _, n := range []*synctest.Client{a, b, a} {
				if _, err := n.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			want := synctest.Dump(t, srv.DB, srv.Reg)
			for _, n := range []*synctest.Client{a, b} {
				if d := synctest.Diff(want, synctest.Dump(t, n.DB, n.Reg)); d != "" {
					t.Errorf("%s and the server differ:\n%s", n.Name, d)
				}
			}
			if got := count(t, srv.DB, "lists", "name = 'one-a2'"); got != 1 {
				t.Errorf("the server lost the node's latest change: %v", synctest.Dump(t, srv.DB, srv.Reg))
			}
		})
	}
}
