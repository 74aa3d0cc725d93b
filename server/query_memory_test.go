package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestQueryHoldsAboutBudget: a query read its page (up to 1001 rows) in
// one statement and answered it whole, bounded in rows only: 1000 rows of
// 5 MB made the server hold 5 GB for one request. The page now ends once
// the line budget is reached (a row larger than the budget goes alone),
// its next the key to resume after: the server holds about the budget and
// a row, and the pages, asked for one after the other, carry every
// matching row once, in key order, and no other.
func TestQueryHoldsAboutBudget(t *testing.T) {
	t.Parallel()
	const budget, n, big = 3000, 40, 1000
	title := func(i int64) string {
		if i == 18 {
			return fmt.Sprintf("%03d", i) + strings.Repeat("y", 3*budget/2) // alone over the budget
		}
		return fmt.Sprintf("%03d", i) + strings.Repeat("x", big)
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			f.Srv.SetLineBudget(budget)
			a := f.register()
			p := newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two")
			for i := int64(1); i <= n; i++ {
				p.todo(models.Insert, i, 1+i%2, title(i)) // odd ids in list 2
			}
			if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}

			var held, peak, read, kept int // bytes of rows
			f.Srv.SetRowsHeld(func(size int) {
				held += size
				peak = max(peak, held)
				if size > 0 {
					read += size
				}
			})
			var got []string
			req := &protocol.QueryRequest{Table: "todos", Equal: map[string]string{"list_id": "1"}, Limit: 1000}
			for pages := 0; ; pages++ {
				if pages > n {
					t.Fatalf("%d pages for %d rows", pages, n/2)
				}
				resp, err := f.Srv.Query(ctx, a.id, req)
				if err != nil {
					t.Fatal(err)
				}
				size := 0
				for _, raw := range resp.Rows {
					size += len(raw)
					var row struct {
						ID     int64  `json:"id"`
						ListID int64  `json:"list_id"`
						Title  string `json:"title"`
					}
					if err := json.Unmarshal(raw, &row); err != nil {
						t.Fatal(err)
					}
					if row.ListID != 1 || row.Title != title(row.ID) {
						t.Errorf("row %d: list %d, title of %d bytes; want list 1, %d bytes", row.ID, row.ListID, len(row.Title), len(title(row.ID)))
					}
					got = append(got, fmt.Sprint(row.ID))
				}
				if size > budget && len(resp.Rows) > 1 {
					t.Errorf("a page of %d rows holds %d bytes, over the budget of %d", len(resp.Rows), size, budget)
				}
				// The test lets the page go.
				kept += size
				held -= size
				if resp.Next == "" {
					break
				}
				req.After = resp.Next
			}
			var want []string
			for i := int64(2); i <= n; i += 2 {
				want = append(want, fmt.Sprint(i))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("pages carried rows %v, want %v", got, want)
			}
			t.Logf("%d bytes of rows read, %d answered, at most %d held", read, kept, peak)
			if read < kept {
				t.Fatalf("%d bytes of rows answered, only %d noted read (SetRowsHeld)", kept, read)
			}
			if bound := budget + len(title(18)) + 60; peak > bound {
				t.Fatalf("the server held up to %d bytes of rows for a page (budget %d), want at most %d", peak, budget, bound)
			}
		})
	}
}

// TestQueryLargeRowsPaged: a query answer was bounded in rows only (up
// to 1000), whatever their size. Over HTTP on loopback, a node queries
// large rows (one larger than the server's line budget) of a server on
// each database: every answer holds at most the budget of rows unless it
// holds one row, pages shorter than the limit say next and are not taken
// for the end, and the node gets every matching row exactly once, both
// paging itself (Client.Query) and with QueryAll.
func TestQueryLargeRowsPaged(t *testing.T) {
	t.Parallel()
	const budget, n, big = 8000, 30, 2000
	title := func(i int) string {
		if i == 10 {
			return fmt.Sprintf("%03d", i) + strings.Repeat("y", 3*budget/2)
		}
		return fmt.Sprintf("%03d", i) + strings.Repeat("x", big)
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewServer(t, kind, nil)
			srv.Srv.SetLineBudget(budget)
			var queries atomic.Int64 // query requests sent over HTTP
			hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if path.Base(r.URL.Path) == "query" {
					queries.Add(1)
				}
				return http.DefaultTransport.RoundTrip(r)
			})}
			b := synctest.NewClient(t, srv, "b", &client.Config{HTTPClient: hc})
			lists := []testmodels.List{{ID: 1, Name: "one"}, {ID: 2, Name: "two"}}
			if _, err := srv.DB.NewInsert().Model(&lists).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			todos := make([]testmodels.Todo, n)
			for i := range todos {
				todos[i] = testmodels.Todo{ID: int64(i + 1), ListID: int64(1 + i%2), Title: title(i + 1)} // even ids in list 2
			}
			if _, err := srv.DB.NewInsert().Model(&todos).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			want := map[int64]string{}
			for _, td := range todos {
				if td.ListID == 1 {
					want[td.ID] = td.Title
				}
			}
			check := func(how string, got []testmodels.Todo) {
				t.Helper()
				seen := map[int64]int{}
				for _, td := range got {
					seen[td.ID]++
					if w, ok := want[td.ID]; !ok || td.Title != w || td.ListID != 1 {
						t.Errorf("%s: todo %d (list %d, title of %d bytes) does not match", how, td.ID, td.ListID, len(td.Title))
					}
				}
				for id := range want {
					if seen[id] != 1 {
						t.Errorf("%s: todo %d received %d times, want once", how, id, seen[id])
					}
				}
			}

			req := &protocol.QueryRequest{Table: "todos", Equal: map[string]string{"list_id": "1"}, Limit: 1000}
			var got []testmodels.Todo
			for pages := 0; ; pages++ {
				if pages > n {
					t.Fatalf("%d pages for %d rows", pages, len(want))
				}
				resp, err := b.Query(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				size := 0
				for _, raw := range resp.Rows {
					size += len(raw)
					row, err := protocol.ParseRow(raw)
					if err != nil {
						t.Fatal(err)
					}
					ptr, err := b.Registry().Table("todos").Codec().DecodeRow(row)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, *ptr.Interface().(*testmodels.Todo))
				}
				if size > budget && len(resp.Rows) > 1 {
					t.Errorf("an answer of %d rows holds %d bytes, over the budget of %d", len(resp.Rows), size, budget)
				}
				if resp.Next == "" {
					break
				}
				req.After = resp.Next
			}
			check("Client.Query", got)

			before := queries.Load()
			all, err := client.QueryAll[testmodels.Todo](ctx, b.Client, map[string]string{"list_id": "1"})
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, td := range all {
				got = append(got, *td)
			}
			check("QueryAll", got)
			if asked := queries.Load() - before; asked < 2 {
				t.Errorf("QueryAll asked %d pages over HTTP, want several", asked)
			}
		})
	}
}
