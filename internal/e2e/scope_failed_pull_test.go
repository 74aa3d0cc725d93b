package e2e_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// badEndWriter buffers a pull answer and spoils its end line's counts,
// so that the node's apply of it fails after its header was read.
type badEndWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *badEndWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *badEndWriter) flush() {
	lines := strings.SplitAfter(w.buf.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, `{"type":"end"`) {
			l = strings.TrimRight(l, "\n")
			lines[i] = strings.TrimSuffix(l, "}") + `,"operation_count":12345}` + "\n"
		}
	}
	_, _ = w.ResponseWriter.Write([]byte(strings.Join(lines, "")))
}

// TestScopesDroppedFailedPull, servers and nodes of both dialects: the
// server drops its scopes, and the node's first pull after the change
// fails once its header was read (its end line does not match what
// came), so nothing of it is applied. The node's next pulls (the same
// client.Client) still bring the rows of the tables it held in part,
// as a backfill. Before, the failed pull had taken the header's scoped
// tables (none) for the node's: the next pull listed no held keys,
// recorded the tables held whole, and the node never got the rows.
func TestScopesDroppedFailedPull(t *testing.T) {
	t.Parallel()
	mods := testmodels.Scoped()
	before := synctest.ScopeRules()
	before["tags"] = server.OwnedBy("name")
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := synctest.ServerDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods)
			_, first := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: before})
			var current atomic.Pointer[http.Handler]
			current.Store(&first)
			var spoil atomic.Bool
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/pull") && spoil.CompareAndSwap(true, false) {
					bw := &badEndWriter{ResponseWriter: w}
					(*current.Load()).ServeHTTP(bw, r)
					bw.flush()
					return
				}
				(*current.Load()).ServeHTTP(w, r)
			}))
			t.Cleanup(hs.Close)
			cfg := &client.Config{URL: hs.URL + "/sync", ChunkSize: 2}
			ann := synctest.NewClientAs(t, nil, "ann", "Bearer ann", synctest.ClientDB(t, kind, "scopedkinds", testmodels.CreateScoped, mods),
				testmodels.CreateScoped, mods, cfg)
			run(t, db, "INSERT INTO tags (id, name) VALUES (1, 'ann'), (2, 'bob'), (3, 'ann'), (4, 'bob'), (5, 'carl')")
			run(t, db, "INSERT INTO projects (id, owner_id, name) VALUES (10, 'bob', 'his')")
			mustSync(t, ann)
			mustSync(t, ann)
			wantKeys(t, ann, "tags", "1", "3")

			_, second := synctest.NewHandler(t, db, mods, &server.Config{AuthorizeRegister: synctest.BearerUser})
			current.Store(&second)
			spoil.Store(true)
			if _, err := ann.Pull(ctx); err == nil {
				t.Fatal("the spoiled pull succeeded")
			}
			wantKeys(t, ann, "tags", "1", "3")
			mustSync(t, ann)
			mustSync(t, ann)
			wantKeys(t, ann, "tags", "1", "2", "3", "4", "5")
			wantKeys(t, ann, "projects", "10")
		})
	}
}
