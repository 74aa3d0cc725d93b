package client_test

import (
	"context"
	"fmt"
	"net/http"
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

type manualKey struct{}

// TestWatchStallSparesWaitingCarriedPull: a watch request's carried
// pull arrives at once, but the client's lock is held (an application's
// own Pull, here held up in its event hook) for longer than Wait+Stall
// after the carried pull's answer came. Stall counts only reads that
// wait for the first bytes: the pull that arrived in time is applied once
// the lock is free. (The clock ran until the first bytes were read, and
// cancelled it.)
func TestWatchStallSparesWaitingCarriedPull(t *testing.T) {
	const (
		wait = 300 * time.Millisecond
		// Stall leaves room for a slow answer on a loaded machine (at
		// 1 s, the watch request itself went unanswered under two
		// busy cores, before and after the carried pull).
		stall = 3 * time.Second
	)
	srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewClient(t, srv, "a", nil)
	var mu sync.Mutex
	var failed []dbsync.Event
	var hold atomic.Bool
	// carried is closed when a watch answer carrying the pull came: the
	// clock of the request it answers (Wait+Stall) started before.
	carried := make(chan struct{})
	var carriedOnce sync.Once
	tr := &transport{}
	tr.setHook(func(r *http.Request, _ []byte, forward func() (*http.Response, error)) (*http.Response, error) {
		resp, err := forward()
		if err == nil && endpoint(r) == "watch" && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
			carriedOnce.Do(func() { close(carried) })
		}
		return resp, err
	})
	b := synctest.NewClient(t, srv, "b", &client.Config{HTTPClient: tr.client(), OnEvent: func(ctx context.Context, e dbsync.Event) {
		if ctx.Value(manualKey{}) != nil && hold.Swap(false) {
			// The application's Pull holds the lock until the carried
			// pull came, and then beyond its request's Wait+Stall.
			select {
			case <-carried:
				time.Sleep(wait + stall + time.Second)
			case <-time.After(time.Minute):
			}
		}
		if e.Err != nil {
			mu.Lock()
			failed = append(failed, e)
			mu.Unlock()
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	insertList(t, a.DB, "one")
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, &client.WatchOptions{Wait: wait, Stall: stall,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	}()
	time.Sleep(200 * time.Millisecond) // the watch request waits
	hold.Store(true)
	go func() { _, _ = b.Pull(context.WithValue(ctx, manualKey{}, true)) }()
	time.Sleep(100 * time.Millisecond) // its hook holds the lock
	insertList(t, a.DB, "two")
	for i := 0; i < 2; i++ {
		insertTodos(t, a.DB, 1, fmt.Sprintf("todo%d-", i), 500)
	}
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// b gets a's rows once the lock is free: from the carried pull, or
	// (when it failed) from the sync after it.
	want := count(t, a.DB, "todos", "")
	for deadline := time.Now().Add(time.Minute); count(t, b.DB, "todos", "") != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b never got a's %d todos", want)
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, e := range failed {
		t.Errorf("%s event failed: %v", e.Op, e.Err)
	}
}
