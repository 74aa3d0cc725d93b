package handlers_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestSignedSchemaHeaders: a signature of form 2 covers the schema
// headers, so a request whose announcement is changed in transit is
// refused 401 (with form 1 it is served against the schema put in its
// place); Config.RequireSignedSchema refuses form 1, and the Go client
// signs form 2, also when a server requires it.
func TestSignedSchemaHeaders(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, require := range []bool{false, true} {
			name := kind + "/accepts form 1"
			if require {
				name = kind + "/requires form 2"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, kind, &envConfig{handlers: &handlers.Config{
					Registration: handlers.RateLimit{Every: -1}, RequireSignedSchema: require}})
				older := e.s.Srv.Registry().NodeSchema()
				older.Tables = slices.DeleteFunc(older.Tables, func(t protocol.SchemaTable) bool { return t.Name == "notes" })
				announceOlder := func(h http.Header) {
					h.Set(protocol.HeaderSchema, older.Fingerprint())
					h.Set(protocol.HeaderTables, older.String())
				}
				announceOwn := func(h http.Header) { h.Set(protocol.HeaderTables, e.s.Reg.NodeSchema().String()) }
				form1 := http.StatusOK
				if require {
					form1 = http.StatusUnauthorized
				}
				cases := []struct {
					name   string
					opts   []opt
					status int
				}{
					{"form 2", []opt{form2()}, http.StatusOK},
					{"form 2, announced older", []opt{form2(), withHeader(announceOlder)}, http.StatusOK},
					{"form 2, announcement changed in transit", []opt{form2(), tamper(announceOlder)}, http.StatusUnauthorized},
					{"form 2, tables added in transit", []opt{form2(), tamper(announceOwn)}, http.StatusUnauthorized},
					{"form 2, nullable removed in transit", []opt{form2(), withHeader(func(h http.Header) { h.Set(protocol.HeaderNullable, "lists.name") }),
						tamper(func(h http.Header) { h.Del(protocol.HeaderNullable) })}, http.StatusUnauthorized},
					{"form 1", nil, form1},
					{"form 1, announcement changed in transit", []opt{withHeader(announceOlder)}, form1},
					{"unknown form", []opt{setHeader(protocol.HeaderSignatureForm, "3")}, http.StatusUnauthorized},
				}
				for _, c := range cases {
					status, raw, d := e.do(e.request(http.MethodGet, "query", "table=lists", nil, c.opts...))
					if status != c.status {
						t.Errorf("%s: %d %s, want %d", c.name, status, raw, c.status)
					}
					if status == http.StatusUnauthorized && d.Code != protocol.CodeUnauthorized {
						t.Errorf("%s: code %q, want %q", c.name, d.Code, protocol.CodeUnauthorized)
					}
				}

				// The Go client syncs; one whose schema headers a proxy
				// changes gets ErrUnauthorized.
				cl := synctest.NewClient(t, e.s, "signer", &client.Config{URL: e.url})
				if _, err := cl.DB.NewInsert().Model(&testmodels.List{Name: "signed"}).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := cl.Sync(ctx); err != nil {
					t.Fatalf("sync: %v", err)
				}
				changed := synctest.NewClient(t, e.s, "changed", &client.Config{URL: e.url,
					HTTPClient: &http.Client{Transport: headerChanger{announceOlder}}})
				if _, err := changed.Sync(ctx); !errors.Is(err, dbsync.ErrUnauthorized) {
					t.Fatalf("sync with the announcement changed in transit: %v, want ErrUnauthorized", err)
				}
			})
		}
	}
}

// headerChanger changes the headers of each signed request it sends.
type headerChanger struct{ change func(http.Header) }

func (c headerChanger) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get(protocol.HeaderSignature) != "" {
		r = r.Clone(r.Context())
		c.change(r.Header)
	}
	return http.DefaultTransport.RoundTrip(r)
}
