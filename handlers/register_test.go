package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// registerAs sends a registration with an Authorization header; headers,
// if any, then change the request's headers.
func (e *env) registerAs(credentials, body string, headers ...func(http.Header)) (int, []byte, protocol.ErrorDetail, http.Header) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/register", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	req.Header.Set(protocol.HeaderSchema, e.s.Reg.Fingerprint())
	if credentials != "" {
		req.Header.Set("Authorization", credentials)
	}
	for _, h := range headers {
		h(req.Header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		e.t.Fatalf("register answer %d: %v", resp.StatusCode, err)
	}
	var eb protocol.ErrorBody
	_ = json.Unmarshal(raw, &eb)
	return resp.StatusCode, raw, eb.Error, resp.Header
}

// TestRegisterCredentials: the register hook sees the Authorization header
// and the caller's address, and its answer decides; a refusal writes
// nothing.
func TestRegisterCredentials(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []server.RegisterInfo
			e := newEnv(t, kind, &envConfig{server: &server.Config{
				AuthorizeRegister: func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					mu.Lock()
					seen = append(seen, *info)
					mu.Unlock()
					if len(seen) == 1 {
						return nil, nil // newEnv's own registration
					}
					user, ok := strings.CutPrefix(info.Credentials, "Bearer token-of-")
					if !ok {
						return nil, errors.New("no valid token")
					}
					return &server.Registration{UserID: &user}, nil
				},
			}})
			before := e.state()
			for _, cred := range []string{"", "Bearer wrong", "Basic dG9rZW4tb2Y6YQ=="} {
				if status, raw, d, _ := e.registerAs(cred, `{}`); status != http.StatusForbidden || d.Code != protocol.CodeForbidden {
					t.Fatalf("register with %q: %d %s, want 403 forbidden", cred, status, raw)
				}
			}
			e.unchanged(before, "refused registrations")
			status, raw, _, _ := e.registerAs("Bearer token-of-ann", `{"extra_data":{"device":"phone"}}`)
			var rr protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &rr) != nil || rr.Node.RegistryUserID == nil || *rr.Node.RegistryUserID != "ann" {
				t.Fatalf("register with a token: %d %s", status, raw)
			}
			mu.Lock()
			defer mu.Unlock()
			last := seen[len(seen)-1]
			if last.Credentials != "Bearer token-of-ann" || !strings.HasPrefix(last.RemoteAddr, "127.0.0.1:") ||
				last.Request == nil || string(last.Request.ExtraData) != `{"device":"phone"}` {
				t.Fatalf("hook saw %+v", last)
			}
		})
	}
}

// TestRegisterAuthorizedFirst: the register hook decides before the
// caller's schema headers are read: a caller the hook refuses is answered
// 403 whatever its schema, and learns nothing of the server's; one it
// accepts is then refused for its schema, and nothing is written.
func TestRegisterAuthorizedFirst(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := 0
			e := newEnv(t, kind, &envConfig{server: &server.Config{
				AuthorizeRegister: func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					if calls == 1 || info.Credentials == "Bearer good" {
						return nil, nil // newEnv's own registration, or a good token
					}
					return nil, errors.New("no valid token")
				},
			}})
			older := e.s.Srv.Registry().NodeSchema()
			older.Tables = slices.DeleteFunc(older.Tables, func(t protocol.SchemaTable) bool { return t.Name == "notes" })
			newer := e.s.Srv.Registry().NodeSchema()
			newer.Table("lists").Columns = append(newer.Table("lists").Columns, protocol.SchemaColumn{Name: "extra", Class: newer.Table("lists").Column("name").Class})
			newer.Normalize()
			cases := []struct {
				name   string
				header func(http.Header)
				status int
				code   string // when the hook accepts
			}{
				{name: "node NOT NULL, server nullable", status: http.StatusConflict, code: protocol.CodeSchemaMismatch,
					header: func(h http.Header) { h.Set(protocol.HeaderNullable, "1;notes:score!") }},
				{name: "column the server lacks", status: http.StatusConflict, code: protocol.CodeSchemaMismatch,
					header: func(h http.Header) {
						h.Set(protocol.HeaderSchema, newer.Fingerprint())
						h.Set(protocol.HeaderTables, newer.String())
					}},
				{name: "bare other fingerprint", status: http.StatusConflict, code: protocol.CodeSchemaMismatch,
					header: func(h http.Header) { h.Set(protocol.HeaderSchema, older.Fingerprint()) }},
				{name: "not a schema", status: http.StatusBadRequest, code: protocol.CodeBadRequest,
					header: func(h http.Header) {
						h.Set(protocol.HeaderSchema, "x")
						h.Set(protocol.HeaderTables, "garbage")
					}},
			}
			before := e.state()
			for _, c := range cases {
				mu.Lock()
				n := calls
				mu.Unlock()
				if status, raw, d, _ := e.registerAs("Bearer wrong", `{}`, c.header); status != http.StatusForbidden || d.Code != protocol.CodeForbidden {
					t.Fatalf("%s, refused by the hook: %d %s, want 403 forbidden", c.name, status, raw)
				}
				mu.Lock()
				if calls != n+1 {
					t.Fatalf("%s: hook called %d times, want once", c.name, calls-n)
				}
				mu.Unlock()
				if status, raw, d, _ := e.registerAs("Bearer good", `{}`, c.header); status != c.status || d.Code != c.code {
					t.Fatalf("%s, accepted by the hook: %d %s, want %d %s", c.name, status, raw, c.status, c.code)
				}
			}
			e.unchanged(before, "refused registrations")
			if status, raw, _, _ := e.registerAs("Bearer good", `{}`); status != http.StatusOK {
				t.Fatalf("register with a good token: %d %s", status, raw)
			}
		})
	}
}

// TestRegisterRefusedKeepsNoView: a registration the hook refuses builds
// no view of its schema, so that callers without credentials sending
// many schemas cannot push out of the server's views (the last 64 used)
// those of the nodes it serves.
func TestRegisterRefusedKeepsNoView(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			e := newEnv(t, kind, &envConfig{server: &server.Config{
				AuthorizeRegister: func(ctx context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					if calls.Add(1) == 1 {
						return nil, nil // newEnv's own registration
					}
					return synctest.BearerUser(ctx, info)
				},
			}})
			schemas := synctest.OlderSchemas(e.s.Srv.Registry())
			announce := func(tables string) func(http.Header) {
				return func(h http.Header) {
					h.Del(protocol.HeaderSchema)
					h.Set(protocol.HeaderTables, tables)
				}
			}
			held := func(tables string) bool {
				t.Helper()
				v, err := e.s.Srv.LookupSchema("", tables)
				if err != nil {
					t.Fatal(err)
				}
				return v != nil
			}
			if status, raw, _, _ := e.registerAs("Bearer ann", `{}`, announce(schemas[0])); status != http.StatusOK || !held(schemas[0]) {
				t.Fatalf("register of an older node: %d %s, view held %v", status, raw, held(schemas[0]))
			}
			before := e.state()
			for i, s := range schemas[1:] {
				if status, raw, d, _ := e.registerAs("", `{}`, announce(s)); status != http.StatusForbidden || d.Code != protocol.CodeForbidden {
					t.Fatalf("schema %d: %d %s, want 403 forbidden", i+1, status, raw)
				}
			}
			e.unchanged(before, "refused registrations")
			if !held(schemas[0]) {
				t.Fatal("the view of the registered node's schema was dropped")
			}
			for i, s := range schemas[1:] {
				if held(s) {
					t.Fatalf("a refused registration's schema %d has a view", i+1)
				}
			}
		})
	}
}

// TestRegisterRateLimit: registrations beyond the per-address bound get
// 429 with Retry-After and a JSON error, before the hook, writing nothing.
func TestRegisterRateLimit(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := 0
			e := newEnv(t, kind, &envConfig{
				server: &server.Config{AuthorizeRegister: func(ctx context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					mu.Lock()
					calls++
					mu.Unlock()
					return server.OpenRegistration(ctx, info)
				}},
				handlers: &handlers.Config{Registration: handlers.RateLimit{Every: time.Hour, Burst: 3}},
			})
			for i := range 2 { // newEnv registered once
				if status, raw, _, _ := e.registerAs("", `{}`); status != http.StatusOK {
					t.Fatalf("registration %d: %d %s", i+2, status, raw)
				}
			}
			before := e.state()
			status, raw, d, h := e.registerAs("", `{}`)
			if status != http.StatusTooManyRequests || d.Code != protocol.CodeRateLimited || !errors.Is(dbsync.ErrorForCode(d.Code), dbsync.ErrRateLimited) {
				t.Fatalf("registration beyond the burst: %d %s, want 429 rate_limited", status, raw)
			}
			if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 3600 {
				t.Fatalf("Retry-After %q", h.Get("Retry-After"))
			}
			e.unchanged(before, "a rate-limited registration")
			mu.Lock()
			defer mu.Unlock()
			if calls != 3 {
				t.Fatalf("hook called %d times, want 3", calls)
			}
		})
	}
}

// TestRegisterRateLimitClientIP: the registration bound counts by the
// client IP a chi ClientIPFrom* middleware in front of the handlers found
// (here ClientIPFromXFF trusting the loopback proxy), which the register
// hook sees too; without such a middleware a forwarded header is
// ignored, so a client sending a new X-Forwarded-For with each request
// is still limited. Before, the handlers read RemoteAddr only, and the
// README and the example server put middleware.RealIP in front, which
// takes the header from anyone: each spoofed address got a fresh bucket.
func TestRegisterRateLimitClientIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		middleware []func(http.Handler) http.Handler
		limited    bool   // the fourth registration, from a new forwarded address
		seen       string // the hook's RemoteAddr prefix for 203.0.113.1
	}{
		{"behind a trusted proxy", []func(http.Handler) http.Handler{middleware.ClientIPFromXFF("127.0.0.0/8", "::1/128")}, false, "203.0.113.1"},
		{"no proxy", nil, true, "127.0.0.1:"},
	} {
		for _, kind := range dbtest.Kinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				var seen []string
				e := newEnv(t, kind, &envConfig{
					server: &server.Config{AuthorizeRegister: func(ctx context.Context, info *server.RegisterInfo) (*server.Registration, error) {
						mu.Lock()
						seen = append(seen, info.RemoteAddr)
						mu.Unlock()
						return server.OpenRegistration(ctx, info)
					}},
					handlers:   &handlers.Config{Registration: handlers.RateLimit{Every: time.Hour, Burst: 3}},
					middleware: tc.middleware,
				})
				from := func(ip string) func(http.Header) {
					return func(h http.Header) { h.Set("X-Forwarded-For", ip) }
				}
				// newEnv registered once, without the header: from the
				// loopback address, which the bound counts when no proxy
				// is trusted.
				n := 3
				if tc.limited {
					n = 2
				}
				for i := range n {
					if status, raw, _, _ := e.registerAs("", `{}`, from("203.0.113.1")); status != http.StatusOK {
						t.Fatalf("registration %d of 203.0.113.1: %d %s", i+1, status, raw)
					}
				}
				status, raw, d, _ := e.registerAs("", `{}`, from("203.0.113.2"))
				switch {
				case tc.limited && (status != http.StatusTooManyRequests || d.Code != protocol.CodeRateLimited):
					t.Fatalf("a fourth registration under another forwarded address, no proxy trusted: %d %s, want 429 rate_limited", status, raw)
				case !tc.limited && status != http.StatusOK:
					t.Fatalf("the first registration of another client behind the proxy: %d %s, want 200", status, raw)
				}
				if !tc.limited {
					if status, raw, d, _ := e.registerAs("", `{}`, from("203.0.113.1")); status != http.StatusTooManyRequests || d.Code != protocol.CodeRateLimited {
						t.Fatalf("a fourth registration of 203.0.113.1 behind the proxy: %d %s, want 429 rate_limited", status, raw)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if len(seen) < 2 || !strings.HasPrefix(seen[1], tc.seen) {
					t.Fatalf("the hook saw %q, want the second from %s", seen, tc.seen)
				}
			})
		}
	}
}

// TestRegisterInvalidUserID: a register hook that accepts a node with a
// user id the server cannot store as it is (not valid UTF-8, which SQLite
// stored as sent while the node was answered U+FFFD; a NUL, which
// PostgreSQL refuses), or that means nothing (empty: no user is nil), or
// is longer than server.MaxUserIDBytes, is the server's configuration
// error: 500 internal, the reason in the handlers' log, nothing written.
func TestRegisterInvalidUserID(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			users := map[string]string{
				"Bearer not-utf8": "caf\xe9",
				"Bearer nul":      "a\x00b",
				"Bearer empty":    "",
				"Bearer long":     strings.Repeat("a", server.MaxUserIDBytes+1),
				"Bearer longest":  strings.Repeat("é", server.MaxUserIDBytes/2),
			}
			var log syncBuffer
			e := newEnv(t, kind, &envConfig{
				server: &server.Config{AuthorizeRegister: func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
					user, ok := users[info.Credentials]
					if !ok {
						return nil, nil // newEnv's own registration
					}
					return &server.Registration{UserID: &user}, nil
				}},
				handlers: &handlers.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))},
			})
			for _, cred := range []string{"Bearer not-utf8", "Bearer nul", "Bearer empty", "Bearer long"} {
				before := e.state()
				status, raw, d, _ := e.registerAs(cred, `{}`)
				if status != http.StatusInternalServerError || d.Code != protocol.CodeInternal {
					t.Fatalf("register with %q: %d %s, want 500 internal", cred, status, raw)
				}
				e.unchanged(before, "register with "+cred)
			}
			for _, why := range []string{"not valid UTF-8", "empty", "longer than"} {
				if !strings.Contains(log.String(), "Registration.UserID "+why) {
					t.Fatalf("the log does not say the user id is %s:\n%s", why, log.String())
				}
			}
			status, raw, _, _ := e.registerAs("Bearer longest", `{}`)
			var rr protocol.RegisterResponse
			if status != http.StatusOK || json.Unmarshal(raw, &rr) != nil || rr.Node.RegistryUserID == nil || *rr.Node.RegistryUserID != users["Bearer longest"] {
				t.Fatalf("register with the longest user id: %d %.200s", status, raw)
			}
		})
	}
}
