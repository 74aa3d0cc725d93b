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

// TestDiscardWithPushInFlight: a node's push is cut (its copy still on its
// way) and the application gives the change up with DiscardPending; the
// copy arrives after that, or before. The node ends equal to the server:
// a copy arriving after is refused (push_abandoned), one applied before is
// in the server's rows DiscardPending reads. Before the fix a copy
// arriving after was applied as a version of the node, whose operations
// its pulls leave out (merge.md A5): the node kept the value the copy
// overwrote on the server, for good.
func TestDiscardWithPushInFlight(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name         string
			afterDiscard bool
			status       int // the copy's answer
		}{
			{"copy_after_discard", true, http.StatusConflict},
			{"copy_before_discard", false, http.StatusOK},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
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
				id := insertList(t, a.DB, "one")
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
				// The copy of the push that was on its way arrives.
				deliver := func() {
					t.Helper()
					held.Body, held.RequestURI = io.NopCloser(bytes.NewReader(body)), ""
					resp, err := http.DefaultTransport.RoundTrip(held)
					if err != nil {
						t.Fatal(err)
					}
					out, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tc.status {
						t.Fatalf("the copy: %d %s, want %d", resp.StatusCode, out, tc.status)
					}
				}
				if !tc.afterDiscard {
					deliver()
				}
				if err := a.DiscardPending(ctx, []protocol.ScopeEntry{{Table: "lists", PK: strconv.FormatInt(id, 10)}}); err != nil {
					t.Fatal(err)
				}
				if tc.afterDiscard {
					deliver()
				}
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
			})
		}
	}
}
