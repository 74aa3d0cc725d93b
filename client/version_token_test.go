package client_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/server"
)

// TestVersionTokensRecorded: whichever way a node comes to hold a version
// (its push answered, a pull, a repair, a reset), it records the
// server's token for it, and names its version by it.
func TestVersionTokensRecorded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewLocalServer(t, kind, nil)
			a := synctest.NewClient(t, s, "a", nil)
			b := synctest.NewClient(t, s, "b", nil)
			steps := []struct {
				name string
				c    *synctest.Client
				run  func() error
			}{
				{"push", a, func() error { insertList(t, a.DB, "a"); _, err := a.Push(ctx); return err }},
				{"pull", b, func() error { _, err := b.Pull(ctx); return err }},
				{"repair", a, func() error { _, err := a.Repair(ctx, nil); return err }},
				{"reset", b, func() error {
					insertList(t, a.DB, "a 2")
					if _, err := a.Push(ctx); err != nil {
						return err
					}
					_, err := b.Reset(ctx)
					return err
				}},
			}
			for _, st := range steps {
				if err := st.run(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				var version int64
				var token *string
				if err := st.c.DB.NewRaw(`SELECT v.version_id, t.token FROM sync_versions v
LEFT JOIN sync_version_tokens t ON t.version_id = v.version_id ORDER BY v.version_id DESC LIMIT 1`).Scan(ctx, &version, &token); err != nil {
					t.Fatal(err)
				}
				var want string
				if err := s.DB.NewRaw("SELECT token FROM sync_version_tokens WHERE version_id = ?", version).Scan(ctx, &want); err != nil {
					t.Fatal(err)
				}
				if token == nil || *token != want {
					t.Fatalf("after a %s, %s holds version %d with token %v, want the server's %q", st.name, st.c.Name, version, token, want)
				}
			}
		})
	}
}

// TestWatchTokenOlderServer: a server of an earlier release refuses a
// watch request naming a parameter it does not know (after_token) as a
// bad request; the node watches on without the token from then on, and
// gets the other node's version.
func TestWatchTokenOlderServer(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := synctest.NewServer(t, kind, &server.Config{WatchPoll: 20 * time.Millisecond})
			var refused atomic.Int32
			older := synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if strings.HasSuffix(r.URL.Path, "/watch") && r.URL.Query().Has("after_token") {
					refused.Add(1)
					body := `{"error":{"code":"bad_request","message":"dbsync: bad request: unknown parameter \"after_token\""}}`
					return &http.Response{StatusCode: http.StatusBadRequest, Header: http.Header{"Content-Type": {"application/json"}},
						Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
				}
				return http.DefaultTransport.RoundTrip(r)
			})
			a := synctest.NewClient(t, s, "a", &client.Config{HTTPClient: &http.Client{Transport: older}})
			b := synctest.NewClient(t, s, "b", nil)
			insertList(t, b.DB, "one")
			for _, c := range []*synctest.Client{b, a} {
				if _, err := c.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				done <- a.Watch(ctx, &client.WatchOptions{MinBackoff: 10 * time.Millisecond})
			}()
			insertList(t, b.DB, "two")
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				var n int
				if err := a.DB.NewRaw("SELECT COUNT(*) FROM lists").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				if n == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a holds %d lists, want 2: the watch never got b's version (%d requests refused)", n, refused.Load())
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			<-done
			if n := refused.Load(); n != 1 {
				t.Fatalf("%d watch requests with a token refused, want 1 (then none sent)", n)
			}
		})
	}
}
