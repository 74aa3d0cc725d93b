package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// TestQueryAllBound: QueryAll holds at most Config.MaxQueryBytes of rows
// (as they came): a larger result fails with dbsync.ErrTooLarge naming
// the bound, a smaller one is read whole as before, and a negative bound
// is none. QueryEach reads any result a page at a time, and stops asking
// for pages when the loop breaks. Before, QueryAll collected every page
// without a bound. Pages of 3 rows from a real server over loopback HTTP.
func TestQueryAllBound(t *testing.T) {
	t.Parallel()
	const lists = 10
	ctx := context.Background()
	srv := synctest.NewServer(t, dbtest.KindSQLite, &server.Config{QueryLimit: 3})
	a := synctest.NewClient(t, srv, "a", nil)
	for i := range lists {
		insertList(t, a.DB, fmt.Sprintf("list%02d-%s", i, strings.Repeat("x", 100)))
	}
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Each list's row is 100 to 200 bytes of JSON: 10 of them pass 1000.
	for _, tc := range []struct {
		name     string
		maxBytes int64
		tooLarge bool
	}{
		{"default", 0, false},
		{"above the result", 4000, false},
		{"below the result", 1000, true},
		{"below one page", 10, true},
		{"no bound", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := synctest.NewClient(t, srv, "b", &client.Config{MaxQueryBytes: tc.maxBytes})
			got, err := client.QueryAll[testmodels.List](ctx, b.Client, nil)
			if tc.tooLarge {
				if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "MaxQueryBytes") ||
					!strings.Contains(err.Error(), fmt.Sprint(tc.maxBytes)) {
					t.Fatalf("QueryAll of %d lists with MaxQueryBytes %d: %d rows, %v; want dbsync.ErrTooLarge naming the bound",
						lists, tc.maxBytes, len(got), err)
				}
				if got != nil {
					t.Fatalf("QueryAll failed but returned %d rows", len(got))
				}
				return
			}
			if err != nil || len(got) != lists {
				t.Fatalf("QueryAll with MaxQueryBytes %d: %d rows, %v; want %d", tc.maxBytes, len(got), err, lists)
			}
		})
	}
	t.Run("QueryEach", func(t *testing.T) {
		t.Parallel()
		tr := &transport{}
		b := synctest.NewClient(t, srv, "b", &client.Config{HTTPClient: tr.client(), MaxQueryBytes: 10})
		var names []string
		for l, err := range client.QueryEach[testmodels.List](ctx, b.Client, nil) {
			if err != nil {
				t.Fatalf("QueryEach: %v", err)
			}
			names = append(names, l.Name)
		}
		if len(names) != lists || !strings.HasPrefix(names[0], "list00-") || !strings.HasPrefix(names[lists-1], "list09-") {
			t.Fatalf("QueryEach read %v, want the %d lists in key order", names, lists)
		}
		if n := len(tr.requests("query")); n != 4 {
			t.Fatalf("QueryEach asked %d pages, want 4 (of 3 rows)", n)
		}
		// Breaking out after 4 rows: the second page is the last asked.
		read := 0
		for _, err := range client.QueryEach[testmodels.List](ctx, b.Client, nil) {
			if err != nil {
				t.Fatal(err)
			}
			if read++; read == 4 {
				break
			}
		}
		if n := len(tr.requests("query")); n != 4+2 {
			t.Fatalf("QueryEach broken out of after 4 rows asked %d pages, want 2", n-4)
		}
	})
	t.Run("QueryEach error", func(t *testing.T) {
		t.Parallel()
		tr := &transport{}
		b := synctest.NewClient(t, srv, "b", &client.Config{HTTPClient: tr.client()})
		tr.setHook(func(r *http.Request, _ []byte, forward func() (*http.Response, error)) (*http.Response, error) {
			if endpoint(r) == "query" && r.URL.Query().Get("after") != "" {
				return nil, errLostReply // the second page is lost
			}
			return forward()
		})
		var rows, errs int
		for l, err := range client.QueryEach[testmodels.List](ctx, b.Client, nil) {
			if err != nil {
				if l != nil || !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("QueryEach yielded %v with error %v, want a nil row and dbsync.ErrNetwork", l, err)
				}
				errs++
				continue
			}
			rows++
		}
		if rows != 3 || errs != 1 {
			t.Fatalf("QueryEach with its second page lost: %d rows then %d errors, want 3 then 1", rows, errs)
		}
	})
}

// TestQueryPageWithoutRows: a query page with next and no rows is a bad
// answer, for QueryAll and QueryEach alike, after one request. Before,
// it ended the rows silently, though only the absence of next ends them
// (docs/protocol.md): a result cut short, read as whole.
func TestQueryPageWithoutRows(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("query", jsonAnswer(`{"rows":[],"next":"5"}`))
	cl, _ := newHostileClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := client.QueryAll[testmodels.List](ctx, cl, nil); !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("QueryAll of a page with next and no rows: %d rows, %v; want dbsync.ErrBadResponse", len(got), err)
	}
	var err error
	for _, err = range client.QueryEach[testmodels.List](ctx, cl, nil) {
	}
	if !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("QueryEach of a page with next and no rows: %v; want dbsync.ErrBadResponse", err)
	}
	if n := f.hits["query"].Load(); n != 2 {
		t.Fatalf("%d query requests, want one for each", n)
	}
}

// TestQueryEachCursorMemory: QueryEach holds one page, whatever the
// pages' cursors: 64 pages of one row each and a distinct cursor of
// 256 KiB (a server, broken or hostile, whose pages never end) leave
// the heap within 8 MiB of where it began, and a cursor cycle of 5
// pages is still refused as a bad answer. Before, every cursor was kept
// (16 MiB here, without end for a result without end). Not parallel: it
// measures the heap.
func TestQueryEachCursorMemory(t *testing.T) {
	const pages, cursor = 64, 256 << 10
	pad := strings.Repeat("c", cursor)
	var n atomic.Int64
	f := newFake(t)
	f.on("query", func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"rows":[{"id":%d,"name":"l%d"}],"next":"%d%s"}`, k, k, k, pad)
	})
	cl, _ := newHostileClient(t, f, nil)
	// A guard against a hang only: the 64 pages take 3 s under -race
	// (10 s on a busy machine).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var before, at runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	read := 0
	for _, err := range client.QueryEach[testmodels.List](ctx, cl, nil) {
		if err != nil {
			t.Fatalf("QueryEach after %d rows: %v", read, err)
		}
		if read++; read == pages {
			runtime.GC()
			runtime.ReadMemStats(&at)
			break
		}
	}
	if grown := int64(at.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Fatalf("QueryEach over %d pages with cursors of %d bytes: the heap grew by %d MiB, want one page", pages, cursor, grown>>20)
	}
	// A cycle of 5 cursors, each page a row.
	n.Store(0)
	f.on("query", func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)%5 + 1
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"rows":[{"id":%d,"name":"l%d"}],"next":"%d"}`, k, k, k)
	})
	var err error
	for _, err = range client.QueryEach[testmodels.List](ctx, cl, nil) {
		if err != nil {
			break
		}
	}
	if !errors.Is(err, dbsync.ErrBadResponse) || n.Load() > 40 {
		t.Fatalf("QueryEach over a cycle of 5 cursors: %v after %d pages; want dbsync.ErrBadResponse within 40", err, n.Load())
	}
}
