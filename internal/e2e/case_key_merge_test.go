package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/uptrace/bun"
)

// TestCaseKeyPullMerge: on a node whose text key ignores case (SQLite's
// NOCASE, a nondeterministic ICU collation on PostgreSQL), a pending
// change under one spelling of a key meets a pulled change of the same
// row under another: the merge takes them for one row (merge.md K2):
// the node's row takes the spelling the pull names, then the M rule of
// a pending change meeting a pulled one applies under the node's policy,
// and the node converges with the server with nothing left pending, its
// values kept where the local side wins. Before, the pulled values were
// written into the node's row, which kept its spelling (the node's
// values lost), and its pending change was pushed under that spelling
// and refused (push_rejected) at every sync.
func TestCaseKeyPullMerge(t *testing.T) {
	t.Parallel()
	type step struct {
		who string // a, b, or s (a direct write on the server)
		q   string
	}
	cases := []struct {
		name string
		// setup runs first (both nodes synced after it); then change,
		// after which a syncs, then b, then a again.
		setup, change []step
		// want, by policy of b: the rows of every side.
		want map[string]string
	}{
		{
			// A pending insert meets a pulled insert (M3).
			name:   "insert_insert",
			change: []step{{"a", "INSERT INTO case_codes (code, name) VALUES ('abc', 'a1')"}, {"b", "INSERT INTO case_codes (code, name) VALUES ('ABC', 'b1')"}},
			want:   map[string]string{"default": "abc:b1", "serverwins": "abc:a1"},
		},
		{
			// The server respells the key (a direct write: the log holds
			// d abc, i ABC) while the node updates the row: M5, then the
			// re-created row meets the insert of ABC (M3).
			name:   "server_respells",
			setup:  []step{{"a", "INSERT INTO case_codes (code, name) VALUES ('abc', 'a1')"}},
			change: []step{{"s", "UPDATE case_codes SET code = 'ABC' WHERE code = 'abc'"}, {"b", "UPDATE case_codes SET name = 'b1' WHERE code = 'abc'"}},
			want:   map[string]string{"default": "ABC:b1", "serverwins": "ABC:a1"},
		},
		{
			// The node respells the key (its log: d abc, i ABC) while
			// another node updates the row (M3).
			name:   "node_respells",
			setup:  []step{{"a", "INSERT INTO case_codes (code, name) VALUES ('abc', 'a1')"}},
			change: []step{{"a", "UPDATE case_codes SET name = 'a2' WHERE code = 'abc'"}, {"b", "UPDATE case_codes SET code = 'ABC', name = 'b1' WHERE code = 'abc'"}},
			want:   map[string]string{"default": "abc:b1", "serverwins": "abc:a2"},
		},
	}
	policies := map[string]merge.Policy{"default": merge.Default, "serverwins": merge.ServerWins}
	for _, server := range dbtest.Kinds {
		for _, node := range dbtest.Kinds {
			for _, c := range cases {
				// Whole and chunk-size-1 pulls reach each node kind from
				// one server kind each; every pairing with DBSYNC_LONG=1.
				chunks := []int{0, 1}
				if !dbtest.Long() {
					chunks = chunks[:1]
					if server != node {
						chunks = []int{1}
					}
				}
				for policy, want := range c.want {
					for _, chunk := range chunks {
						t.Run(fmt.Sprintf("server=%s/node=%s/%s/%s/chunk=%d", server, node, c.name, policy, chunk), func(t *testing.T) {
							t.Parallel()
							ctx := context.Background()
							models := []any{(*testmodels.CaseCode)(nil)}
							s := synctest.NewServerWith(t, synctest.ServerDB(t, server, "case_codes", testmodels.CreateCaseCodes, models), testmodels.CreateCaseCodes, models, nil)
							newNode := func(name string, cfg *client.Config) *synctest.Client {
								db := synctest.ClientDB(t, node, "case_codes", testmodels.CreateCaseCodes, models)
								return synctest.NewClientWith(t, s, name, db, testmodels.CreateCaseCodes, models, cfg)
							}
							a := newNode("a", nil)
							b := newNode("b", &client.Config{DefaultPolicy: policies[policy], ChunkSize: chunk})
							dbs := map[string]bun.IDB{"a": a.DB, "b": b.DB, "s": s.DB}
							rows := func(db bun.IDB) string {
								t.Helper()
								var out []string
								if err := db.NewRaw("SELECT code || ':' || name FROM case_codes ORDER BY code").Scan(ctx, &out); err != nil {
									t.Fatal(err)
								}
								return strings.Join(out, ",")
							}
							for _, st := range c.setup {
								run(t, dbs[st.who], st.q)
							}
							mustSync(t, a)
							mustSync(t, b)
							for _, st := range c.change {
								run(t, dbs[st.who], st.q)
							}
							mustSync(t, a)
							mustSync(t, b)
							mustSync(t, a)
							if n := pendingCount(t, b); n != 0 {
								t.Fatalf("b still has %d pending operations", n)
							}
							for name, db := range dbs {
								if got := rows(db); got != want {
									t.Errorf("%s holds %s, want %s", name, got, want)
								}
							}
						})
					}
				}
			}
		}
	}
}
