package client_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestQueryEmptyCursor: a page whose next is the empty text key (a
// text-keyed table's row "") is followed with after= (empty); QueryAll
// took the empty next for the end of the rows and missed the rest.
func TestQueryEmptyCursor(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.on("query", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if after, ok := r.URL.Query()["after"]; ok && len(after) == 1 && after[0] == "" {
			fmt.Fprint(w, `{"rows":[{"id":2,"name":"b"}]}`)
			return
		}
		fmt.Fprint(w, `{"rows":[{"id":1,"name":"a"}],"next":""}`)
	})
	cl, _ := newHostileClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := client.QueryAll[testmodels.List](ctx, cl, nil)
	if err != nil || len(rows) != 2 {
		t.Fatalf("QueryAll: %d rows, %v; want 2 rows", len(rows), err)
	}
}
