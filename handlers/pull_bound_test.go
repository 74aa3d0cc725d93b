package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPullBodyBound: a pull body is bounded by MaxPullBytes on a server
// with scopes (it carries the keys the node holds) and by MaxBodyBytes on
// one without, which answers a larger one 413 too_large saying so.
func TestPullBodyBound(t *testing.T) {
	t.Parallel()
	limits := &handlers.Config{MaxPullBytes: 1000, MaxBodyBytes: 100, Registration: handlers.RateLimit{Every: -1}}
	for _, kind := range dbtest.Kinds {
		for _, scoped := range []bool{false, true} {
			name := kind
			if scoped {
				name += "/scoped"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cfg := &server.Config{AuthorizeRegister: synctest.BearerUser}
				schema, models := testmodels.CreateSchema, testmodels.All()
				if scoped {
					cfg.Scopes = synctest.ScopeRules()
					schema, models = testmodels.CreateScoped, testmodels.Scoped()
				}
				s := synctest.NewServerWith(t, synctest.ServerOn(t, kind, schema, models), schema, models, cfg)
				r := chi.NewRouter()
				r.Mount("/sync", handlers.New(s.Srv, limits))
				hs := httptest.NewServer(r)
				t.Cleanup(hs.Close)
				resp, err := s.Srv.Register(ctx, &server.RegisterInfo{Credentials: "Bearer ann"})
				if err != nil {
					t.Fatal(err)
				}
				e := &env{t: t, s: s, url: hs.URL + "/sync", node: resp.Node}
				cases := []struct {
					size   int
					status int
				}{
					{90, http.StatusOK},
					{300, http.StatusRequestEntityTooLarge}, // over MaxBodyBytes, under MaxPullBytes
					{1100, http.StatusRequestEntityTooLarge},
				}
				for _, c := range cases {
					want := c.status
					if scoped && c.size == 300 {
						want = http.StatusOK
					}
					head := `{"latest_version_id":0,"held":{"projects":[],"members":[],"tasks":[]}}`
					body := []byte(head + strings.Repeat(" ", c.size-len(head)))
					status, raw, d := e.do(e.request(http.MethodPost, "pull", "", body))
					if status != want {
						t.Fatalf("pull of %d bytes: %d %s, want %d", len(body), status, raw, want)
					}
					if status == http.StatusRequestEntityTooLarge && (d.Code != protocol.CodeTooLarge ||
						!scoped && !strings.Contains(d.Message, "handlers.Config.MaxBodyBytes")) {
						t.Fatalf("pull of %d bytes: %s, want too_large naming MaxBodyBytes", len(body), raw)
					}
				}
			})
		}
	}
}
