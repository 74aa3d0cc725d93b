package peer_test

import (
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// A case-only edit of a text key under a collation that ignores case
// (SQLite's NOCASE, a nondeterministic ICU collation on PostgreSQL) is a
// new identity, as oplog's capture takes it: its peers end with the new
// spelling. The same bytes written again are no new version.
func TestCaseOnlyKeyEdit(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*testmodels.CaseCode)(nil)}
			a := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			b := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			exec(t, a, "INSERT INTO case_codes (code, name) VALUES ('abc', 'x')")
			syncBoth(t, a, b)
			exec(t, a, "UPDATE case_codes SET code = 'ABC'")
			syncBoth(t, a, b)
			seq := func() int64 {
				t.Helper()
				var n int64
				if err := a.DB().QueryRowContext(ctx, "SELECT seq FROM sync_lww_node WHERE id = 1").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := seq()
			exec(t, a, "UPDATE case_codes SET code = 'ABC'")
			if after := seq(); after != before {
				t.Fatalf("the same key written again ticked a's sequence from %d to %d", before, after)
			}
			for name, n := range map[string]*peer.Node{"a": a, "b": b} {
				var rows []string
				if err := n.DB().NewRaw("SELECT code || ' ' || name FROM case_codes").Scan(ctx, &rows); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(rows, []string{"ABC x"}) {
					t.Fatalf("%s holds %q, want [ABC x]", name, rows)
				}
			}
		})
	}
}
