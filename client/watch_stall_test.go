package client_test

import (
	"context"
	"fmt"
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
// own Pull, here held up in its event hook) for longer than Wait+Stall.
// Stall counts only reads that wait for the first bytes: the pull that
// arrived in time is applied once the lock is free. (The clock ran until
// the first bytes were read, and cancelled it.)
func TestWatchStallSparesWaitingCarriedPull(t *testing.T) {
	srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewClient(t, srv, "a", nil)
	var mu sync.Mutex
	var failed []dbsync.Event
	var hold atomic.Bool
	b := synctest.NewClient(t, srv, "b", &client.Config{OnEvent: func(ctx context.Context, e dbsync.Event) {
		if ctx.Value(manualKey{}) != nil && hold.Swap(false) {
			time.Sleep(5 * time.Second) // the application's Pull holds the lock
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
		// Stall leaves room for a slow answer on a loaded machine (at
		// 1 s, the watch request itself went unanswered under two
		// busy cores, before and after the carried pull); the lock is
		// held well beyond Wait and Stall.
		done <- b.Watch(ctx, &client.WatchOptions{Wait: 300 * time.Millisecond, Stall: 3 * time.Second,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	}()
	time.Sleep(200 * time.Millisecond) // the watch request waits
	hold.Store(true)
	go func() { _, _ = b.Pull(context.WithValue(ctx, manualKey{}, true)) }()
	time.Sleep(100 * time.Millisecond) // its hook holds the lock
	insertList(t, a.DB, "two")
	for i := 0; i < 20; i++ {
		insertTodos(t, a.DB, 1, fmt.Sprintf("todo%d-", i), 500)
	}
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6500 * time.Millisecond)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, e := range failed {
		t.Errorf("%s event failed: %v", e.Op, e.Err)
	}
}
