package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestPullCompressesRuns: a pull sends one operation per row, chosen from
// the row's first and last operations in the pulled versions (merge.md
// R1–R8), for rows with one operation and rows with several, whatever the
// chunk size.
func TestPullCompressesRuns(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			n := f.register()
			seal := func(version int64, queries ...string) {
				t.Helper()
				for _, q := range queries {
					if _, err := f.DB.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				if v, err := f.Srv.Seal(ctx); err != nil || v != version {
					t.Fatalf("seal: %d, %v, want version %d", v, err, version)
				}
			}
			seal(1, "INSERT INTO lists (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
			seal(2, "UPDATE lists SET name = 'a2' WHERE id = 1", "DELETE FROM lists WHERE id = 3", "UPDATE lists SET name = 'b2' WHERE id = 2")
			seal(3, "UPDATE lists SET name = 'a3' WHERE id = 1", "INSERT INTO lists (id, name) VALUES (5, 'e')", "DELETE FROM lists WHERE id = 5",
				"DELETE FROM lists WHERE id = 4", "INSERT INTO lists (id, name) VALUES (4, 'd3')")
			// The log's orders of each row's operations, oldest first.
			orders := map[string][]int64{}
			rows, err := f.DB.QueryContext(ctx, `SELECT row_id, "order" FROM sync_operations ORDER BY "order"`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var row string
				var o int64
				if err := rows.Scan(&row, &o); err != nil {
					t.Fatal(err)
				}
				orders[row] = append(orders[row], o)
			}
			rows.Close()
			// op formats an operation as "row command version @ which"
			// where which names the operation whose order it carries:
			// its row's operation number k (1 is the first), counting
			// every version.
			op := func(o protocol.Operation) string {
				k := 0
				for i, x := range orders[o.RowID] {
					if x == o.Order {
						k = i + 1
					}
				}
				v := int64(0)
				if o.VersionID != nil {
					v = *o.VersionID
				}
				return fmt.Sprintf("%s %s v%d @%d", o.RowID, o.Command, v, k)
			}
			cases := []struct {
				after int64
				want  string // in the order of each row's last operation
			}{
				// 2: i u → i (R3); 1: i u u → i; 4: i d i → i (R3); 3
				// and 5: i … d → nothing (R2).
				{0, "2 i v1 @1, 1 i v1 @1, 4 i v1 @1"},
				// 3: d (R1); 2: u (R1); 1: u u → the first u (R5); 4:
				// d i → u with the insert's order and version (R8).
				{1, "3 d v2 @2, 2 u v2 @2, 1 u v2 @2, 4 u v3 @3"},
				{2, "1 u v3 @3, 4 u v3 @3"},
			}
			for _, tc := range cases {
				for _, chunk := range []int{0, 1, 2} {
					msgs := mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(tc.after), ChunkSize: chunk})
					var got []string
					for _, o := range pulledOps(msgs) {
						if o.Table != "lists" {
							t.Fatalf("pulled %+v", o)
						}
						got = append(got, op(o))
					}
					if g := strings.Join(got, ", "); g != tc.want {
						t.Errorf("after version %d, chunks of %d: %s, want %s", tc.after, chunk, g, tc.want)
					}
				}
			}
		})
	}
}
