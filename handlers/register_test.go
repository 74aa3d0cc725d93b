package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// registerAs sends a registration with an Authorization header.
func (e *env) registerAs(credentials, body string) (int, []byte, protocol.ErrorDetail, http.Header) {
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
