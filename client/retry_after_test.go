package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestRetryAfter: a 503 busy or 429 rate_limited answer's Retry-After
// reaches the caller (dbsync.RetryAfter), and Watch waits at least that
// long before its next request, whatever its own backoff. Before, Watch
// retried a busy server after its backoff (0.25–0.5 s by default) though
// the server asked for more, and the caller could not read the wait.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			target, err := url.Parse(srv.HTTP.URL)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			refuse := map[string]string{} // endpoint → Retry-After of its next answer
			var watches []time.Time
			proxy := httputil.NewSingleHostReverseProxy(target)
			ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ep := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
				mu.Lock()
				if ep == "watch" {
					watches = append(watches, time.Now())
				}
				after, ok := refuse[ep]
				delete(refuse, ep)
				mu.Unlock()
				if ok {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Retry-After", after)
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprint(w, `{"error":{"code":"busy","message":"dbsync: server busy: too many watchers"}}`)
					return
				}
				proxy.ServeHTTP(w, r)
			}))
			t.Cleanup(ps.Close)
			var watchErr atomic.Pointer[error]
			a := synctest.NewClient(t, srv, "a", &client.Config{URL: ps.URL + "/sync", OnEvent: func(_ context.Context, e dbsync.Event) {
				if e.Op == "watch" && e.Err != nil {
					watchErr.CompareAndSwap(nil, &e.Err)
				}
			}})

			mu.Lock()
			refuse["push"] = "7"
			mu.Unlock()
			exec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')")
			_, err = a.Push(ctx)
			if !errors.Is(err, dbsync.ErrBusy) || dbsync.RetryAfter(err) != 7*time.Second {
				t.Fatalf("push answered 503 with Retry-After 7: %v, RetryAfter %v; want dbsync.ErrBusy and 7s", err, dbsync.RetryAfter(err))
			}
			if d := dbsync.RetryAfter(errors.New("other")); d != 0 {
				t.Fatalf("RetryAfter of another error: %v", d)
			}

			mu.Lock()
			refuse["watch"] = "1"
			mu.Unlock()
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- a.Watch(wctx, &client.WatchOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Wait: time.Second})
			}()
			deadline := time.Now().Add(time.Minute)
			for {
				mu.Lock()
				n := len(watches)
				mu.Unlock()
				if n >= 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			mu.Lock()
			defer mu.Unlock()
			if len(watches) < 2 {
				t.Fatalf("%d watch requests in a minute, want 2", len(watches))
			}
			if gap := watches[1].Sub(watches[0]); gap < time.Second {
				t.Fatalf("Watch asked again %v after a 503 with Retry-After 1, want at least 1s", gap)
			}
			if p := watchErr.Load(); p == nil || dbsync.RetryAfter(*p) != time.Second {
				t.Fatalf("the watch event's error: %v, want one with RetryAfter 1s", p)
			}
		})
	}
}
