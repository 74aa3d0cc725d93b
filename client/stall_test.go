package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/protocol"
)

// stallAfter answers with lines, flushed, then stalls without closing
// the connection until the client gives up the request.
func stallAfter(lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(200)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

// TestStalledMidAnswer: a pull, repair or reset answer that stalls after
// its first lines, the connection open, fails once a read has waited
// Config.StallTimeout for its next bytes, with dbsync.ErrNetwork, and
// the node is left as it was. Before, the read had no bound: the call
// waited for ever (the default HTTP client has no overall timeout).
func TestStalledMidAnswer(t *testing.T) {
	t.Parallel()
	const stall = 300 * time.Millisecond
	head := []string{`{"type":"header","latest_version_id":4,"tables":["lists","todos","notes"]}`,
		`{"type":"versions","versions":[{"version_id":4,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`}
	for _, op := range []string{"pull", "repair"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			cl, db := newHostileClient(t, f, &client.Config{StallTimeout: stall})
			insertList(t, db, "mine")
			before := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			f.on(op, stallAfter(head...))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			var err error
			switch op {
			case "pull":
				_, err = cl.Pull(ctx)
			case "repair":
				_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
			}
			if ctx.Err() != nil {
				t.Fatalf("%s waited on the stalled answer until the test's deadline: %v", op, err)
			}
			if !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("%s of a stalled answer: %v, want dbsync.ErrNetwork", op, err)
			}
			if d := time.Since(start); d < stall {
				t.Fatalf("%s gave up after %s, before StallTimeout (%s)", op, d, stall)
			}
			after := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			if v, _ := cl.Version(ctx); after != before || v != 0 {
				t.Fatalf("the failed %s changed the node: %s, version %d; before %s, version 0", op, after, v, before)
			}
		})
	}
}

// TestWatchStalledCarriedPull: a watch answer carrying the pull that
// stalls after its first lines (WatchOptions.Stall guards only the wait
// for the first bytes) is given up once a read has waited
// Config.StallTimeout, and Watch goes on: it syncs and watches again.
// Before, the carried pull's read waited for ever and Watch with it.
func TestWatchStalledCarriedPull(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("pull", ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`))
	var first atomic.Bool
	stalled := stallAfter(`{"type":"header","latest_version_id":4}`,
		`{"type":"versions","versions":[{"version_id":4,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`)
	f.on("watch", func(w http.ResponseWriter, r *http.Request) {
		if !first.Swap(true) {
			stalled(w, r)
			return
		}
		jsonAnswer(`{"latest_version_id":0,"changed":false}`)(w, r)
	})
	var failed atomic.Int64
	cl, _ := newHostileClient(t, f, &client.Config{StallTimeout: 300 * time.Millisecond,
		OnEvent: func(_ context.Context, e dbsync.Event) {
			if e.Op == "pull" && errors.Is(e.Err, dbsync.ErrNetwork) {
				failed.Add(1)
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- cl.Watch(ctx, &client.WatchOptions{Wait: 200 * time.Millisecond, Stall: time.Second,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	}()
	for f.hits["watch"].Load() < 2 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	n := f.hits["watch"].Load()
	cancel()
	<-done
	if n < 2 {
		t.Fatal("Watch stayed on a carried pull stalled mid-answer and never asked again")
	}
	if failed.Load() == 0 {
		t.Fatal("the stalled carried pull was not reported as a pull failed with dbsync.ErrNetwork")
	}
}

// TestWatchStalledAnswerIsNetworkError: a JSON watch answer stalled after
// its headers is given up after Wait and Stall with an error wrapping
// dbsync.ErrNetwork (it wrapped none), reported on the watch event.
func TestWatchStalledAnswerIsNetworkError(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("pull", ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`))
	f.on("watch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		fmt.Fprint(w, `{"latest_version_id":`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	errs := make(chan error, 16)
	cl, _ := newHostileClient(t, f, &client.Config{OnEvent: func(_ context.Context, e dbsync.Event) {
		if e.Op == "watch" && e.Err != nil {
			select {
			case errs <- e.Err:
			default:
			}
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cl.Watch(ctx, &client.WatchOptions{Wait: 100 * time.Millisecond, Stall: 200 * time.Millisecond,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	select {
	case err := <-errs:
		if !errors.Is(err, dbsync.ErrNetwork) {
			t.Fatalf("the stalled watch request failed with %v, want dbsync.ErrNetwork", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled watch request was never given up")
	}
}

// TestStalledJSONAnswer: a JSON answer (a query's page, a push's or a
// registration's) that stalls after its headers and first bytes, the
// connection open, fails once a read has waited Config.StallTimeout,
// with dbsync.ErrNetwork; a push keeps its operations to resend. Before,
// the default HTTP client (no overall timeout) waited for ever.
func TestStalledJSONAnswer(t *testing.T) {
	t.Parallel()
	const stall = 300 * time.Millisecond
	for _, ep := range []string{"query", "push", "register"} {
		t.Run(ep, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			cl, db := newHostileClient(t, f, &client.Config{StallTimeout: stall})
			insertList(t, db, "mine")
			f.on(ep, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(200)
				fmt.Fprint(w, `{"rows":[`)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			var err error
			switch ep {
			case "query":
				_, err = cl.Query(ctx, &protocol.QueryRequest{Table: "lists"})
			case "push":
				_, err = cl.Push(ctx)
			case "register":
				_, err = cl.Register(ctx, nil)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s waited on the stalled answer until the test's deadline: %v", ep, err)
			}
			if !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("%s of a stalled answer: %v, want dbsync.ErrNetwork", ep, err)
			}
			if d := time.Since(start); d < stall {
				t.Fatalf("%s gave up after %s, before StallTimeout (%s)", ep, d, stall)
			}
			if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
				t.Fatalf("%d operations pending after the stalled %s, want 1", n, ep)
			}
		})
	}
}

// trickleAfter answers with lines, flushed, then a byte every each
// (within a line it never ends) until the client gives up the request.
func trickleAfter(each time.Duration, lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(200)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		fmt.Fprint(w, `{"type":"versions",`)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(each)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				fmt.Fprint(w, " ")
				w.(http.Flusher).Flush()
			}
		}
	}
}

// TestTrickledAnswer: an answer trickled a byte at a time, each within
// StallTimeout, is given up once it has been read for
// Config.AnswerTimeout, with dbsync.ErrNetwork naming the setting, the
// node left as it was: a pull, a repair, a JSON answer (a query's), and
// a pull carried in a watch answer (Watch's ctx is for all its syncs).
// Before, StallTimeout bounded each wait only: the call went on until
// ctx, or MaxDownloadBytes at a byte per StallTimeout − ε.
func TestTrickledAnswer(t *testing.T) {
	t.Parallel()
	const stall, total = 400 * time.Millisecond, time.Second
	head := []string{`{"type":"header","latest_version_id":4,"tables":["lists","todos","notes"]}`}
	for _, op := range []string{"pull", "repair", "query", "watch"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var failed atomic.Pointer[error] // the first failed pull's (errors of any type)
			cl, db := newHostileClient(t, f, &client.Config{StallTimeout: stall, AnswerTimeout: total,
				OnEvent: func(_ context.Context, e dbsync.Event) {
					if e.Op == "pull" && e.Err != nil {
						err := e.Err
						failed.CompareAndSwap(nil, &err)
					}
				}})
			if op != "watch" { // (Watch would push it first)
				insertList(t, db, "mine")
			}
			before := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			trickle := trickleAfter(stall/4, head...)
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
			defer cancel()
			start := time.Now()
			var err error
			switch op {
			case "pull":
				f.on("pull", trickle)
				_, err = cl.Pull(ctx)
			case "repair":
				f.on("repair", trickle)
				_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
			case "query":
				f.on("query", func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					trickleAfter(stall/4)(w, r)
				})
				_, err = cl.Query(ctx, &protocol.QueryRequest{Table: "lists"})
			case "watch":
				f.on("pull", ndjson(`{"type":"header","latest_version_id":0}`, `{"type":"end"}`))
				f.on("watch", trickle)
				go func() {
					for failed.Load() == nil && ctx.Err() == nil {
						time.Sleep(20 * time.Millisecond)
					}
					cancel()
				}()
				_ = cl.Watch(ctx, &client.WatchOptions{Wait: 200 * time.Millisecond, Stall: time.Second,
					MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
				if p := failed.Load(); p != nil {
					err = *p
				} else {
					err = ctx.Err()
				}
			}
			if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
				t.Fatalf("%s read a trickled answer until the test's deadline (%s): %v", op, time.Since(start), err)
			}
			if !errors.Is(err, dbsync.ErrNetwork) || !strings.Contains(err.Error(), "client.Config.AnswerTimeout") {
				t.Fatalf("%s of a trickled answer: %v, want dbsync.ErrNetwork naming client.Config.AnswerTimeout", op, err)
			}
			if d := time.Since(start); d < total {
				t.Fatalf("%s gave up after %s, before AnswerTimeout (%s)", op, d, total)
			}
			after := fmt.Sprint(titles(t, db), count(t, db, "lists", ""), count(t, db, "sync_operations", ""))
			if v, _ := cl.Version(context.Background()); after != before || v != 0 {
				t.Fatalf("the failed %s changed the node: %s, version %d; before %s, version 0", op, after, v, before)
			}
		})
	}
}
