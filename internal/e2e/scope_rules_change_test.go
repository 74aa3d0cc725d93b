package e2e_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// TestScopeRulesChangeFirstPull, servers and nodes of both dialects, over
// HTTP: the server restarts with server.Config.Scopes making a table
// scoped that was global (tags: a tag named after a user becomes that
// user's), while ann's node runs on, holding both tags and held keys of
// the tables scoped before. Her first pull (or sync, with nothing to
// push: its one pull) after the change, with nothing new or with a new
// version, moves out the tag she may no longer read, unlogged: the server answers
// held_keys_needed for the table her request did not list, and the pull
// asks again at once with its keys. Before, the request counted as
// holding no tag, and the tag stayed until her second pull, whose
// request listed the table the first one's header named.
func TestScopeRulesChangeFirstPull(t *testing.T) {
	t.Parallel()
	mods := testmodels.Scoped()
	before := synctest.ScopeRules()
	after := synctest.ScopeRules()
	after["tags"] = server.OwnedBy("name")
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name  string
			write string // on the server after the change ("": none)
			want  []string
			sync  func(ctx context.Context, c *synctest.Client) (scopeOut int64, err error)
		}{
			{"pull", "", []string{"1"}, func(ctx context.Context, c *synctest.Client) (int64, error) {
				res, err := c.Pull(ctx)
				if err != nil {
					return 0, err
				}
				return res.ScopeOut, nil
			}},
			// A new version too: its tags come as operations, but the
			// one ann may not read.
			{"sync", "INSERT INTO tags (id, name) VALUES (3, 'ann'), (4, 'bob')", []string{"1", "3"}, func(ctx context.Context, c *synctest.Client) (int64, error) {
				res, err := c.Sync(ctx)
				if err != nil {
					return 0, err
				}
				var n int64
				for _, p := range res.Pulls {
					n += p.ScopeOut
				}
				return n, nil
			}},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				db := synctest.ServerDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods)
				// One address for the server before and after its restart.
				_, first := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: before})
				var current atomic.Pointer[http.Handler]
				current.Store(&first)
				hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					(*current.Load()).ServeHTTP(w, r)
				}))
				t.Cleanup(hs.Close)
				ann := synctest.NewClientAs(t, nil, "ann", "Bearer ann", synctest.ClientDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods),
					testmodels.CreateScoped, mods, &client.Config{URL: hs.URL + "/sync"})

				run(t, db, "INSERT INTO tags (id, name) VALUES (1, 'ann'), (2, 'bob')")
				run(t, db, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'ann', 'mine')")
				mustSync(t, ann)
				mustSync(t, ann)
				wantKeys(t, ann, "tags", "1", "2")
				wantKeys(t, ann, "projects", "10")

				_, second := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: after})
				current.Store(&second)
				if tc.write != "" {
					run(t, db, tc.write)
				}
				out, err := tc.sync(ctx, ann)
				if err != nil {
					t.Fatalf("ann's first %s after the change: %v", tc.name, err)
				}
				wantKeys(t, ann, "tags", tc.want...)
				if out != 1 {
					t.Fatalf("ann's first %s after the change moved %d rows out, want 1 (tag 2)", tc.name, out)
				}
				if n := pendingCount(t, ann); n != 0 {
					t.Fatalf("ann holds %d pending operations, want none (the tag left unlogged)", n)
				}
				mustSync(t, ann)
				wantKeys(t, ann, "tags", tc.want...)
				wantKeys(t, ann, "projects", "10")
			})
		}
	}
}
