package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
)

// TestServerRespellsReferencedRowTwoChunks is TestServerRespellsReferencedRow
// with the server's delete and write of the respelled row in two chunks
// (other rows changed between them, or a chunk ends between them): the
// delete, held back while i1 references the row, must not take the
// write with it at the end of the pull. Before, the pull failed with a
// foreign key error at every try, until a repair.
func TestServerRespellsReferencedRowTwoChunks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFake(t)
			mods := []any{(*testmodels.CaseCode)(nil), (*caseItem)(nil)}
			db := synctest.ClientDB(t, kind, "case_items", createCaseItems, mods)
			cl := synctest.NewClientWith(t, nil, "n", db, createCaseItems, mods, &client.Config{URL: f.ts.URL + "/sync"})
			f.on("pull", ndjson(`{"type":"header","latest_version_id":1}`,
				`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`,
				`{"type":"chunk","operations":[{"order":1,"table":"case_codes","row_id":"abc","command":"i","version_id":1},{"order":2,"table":"case_items","row_id":"i1","command":"i","version_id":1}],"payload":{"case_codes":[{"code":"abc","name":"s1"}],"case_items":[{"id":"i1","code":"abc"}]}}`,
				`{"type":"end","operation_count":2,"row_count":2}`))
			if _, err := cl.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			f.on("pull", ndjson(`{"type":"header","latest_version_id":2}`,
				`{"type":"versions","versions":[{"version_id":2,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`,
				`{"type":"chunk","operations":[{"order":3,"table":"case_codes","row_id":"abc","command":"d","version_id":2}],"payload":{}}`,
				`{"type":"chunk","operations":[{"order":4,"table":"case_codes","row_id":"ABC","command":"i","version_id":2}],"payload":{"case_codes":[{"code":"ABC","name":"s2"}]}}`,
				`{"type":"end","operation_count":2,"row_count":1}`))
			if _, err := cl.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			var codes, items []string
			if err := db.NewRaw("SELECT code || '=' || name FROM case_codes").Scan(ctx, &codes); err != nil {
				t.Fatal(err)
			}
			if err := db.NewRaw("SELECT id || ':' || code FROM case_items").Scan(ctx, &items); err != nil {
				t.Fatal(err)
			}
			n, err := db.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(codes, ",")+" / "+strings.Join(items, ",")+fmt.Sprintf(" / %d pending", n), "ABC=s2 / i1:abc / 0 pending"; got != want {
				t.Fatalf("codes / items / pending: %s, want %s", got, want)
			}
		})
	}
}
