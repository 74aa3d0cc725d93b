package httpclient_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpclient"
)

var errKnown = errors.New("known")

func answer(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(body))}
}

func TestError(t *testing.T) {
	t.Parallel()
	known := func(code string) error {
		if code == "mine" {
			return errKnown
		}
		return nil
	}
	err := httpclient.Error(answer(409, `{"error":{"code":"mine","message":"m"}}`), known)
	if !errors.Is(err, errKnown) || !strings.Contains(err.Error(), "m") {
		t.Errorf("known code: %v", err)
	}
	// The message of a known code is the serving node's err.Error(),
	// which starts with the sentinel's text: it is not repeated.
	err = httpclient.Error(answer(409, `{"error":{"code":"mine","message":"known: the detail"}}`), known)
	if !errors.Is(err, errKnown) || err.Error() != "known: the detail" {
		t.Errorf("known code, message with the sentinel's text: %q", err)
	}
	err = httpclient.Error(answer(409, `{"error":{"code":"mine","message":"known"}}`), known)
	if !errors.Is(err, errKnown) || err.Error() != "known" {
		t.Errorf("known code, message the sentinel's text: %q", err)
	}
	var se *dbsync.ServerError
	if err := httpclient.Error(answer(400, `{"error":{"code":"bad_request","message":"m"}}`), known); !errors.As(err, &se) || se.Status != 400 || se.Code != "bad_request" {
		t.Errorf("other code: %v", err)
	}
	var ue *dbsync.UniqueConstraintError
	if err := httpclient.Error(answer(409, `{"error":{"code":"unique_conflict","message":"m"}}`), nil); !errors.As(err, &ue) {
		t.Errorf("unique conflict: %v", err)
	}
	if err := httpclient.Error(answer(502, `<html>`), nil); !errors.Is(err, dbsync.ErrBadResponse) {
		t.Errorf("not an error body: %v", err)
	}
}

func TestReadJSON(t *testing.T) {
	t.Parallel()
	var v struct{ A int }
	if err := httpclient.ReadJSON(answer(200, `{"A":1}`), &v, 0); err != nil || v.A != 1 {
		t.Fatalf("ReadJSON: %v %v", v, err)
	}
	if err := httpclient.ReadJSON(answer(200, `{"A":`), &v, 0); !errors.Is(err, dbsync.ErrNetwork) {
		t.Errorf("cut short: %v", err)
	}
	if err := httpclient.ReadJSON(answer(200, `{"A":"x"}`), &v, 0); !errors.Is(err, dbsync.ErrBadResponse) {
		t.Errorf("wrong JSON: %v", err)
	}
	if err := httpclient.ReadJSON(answer(200, `{"A":12345}`), &v, 5); !errors.Is(err, dbsync.ErrNetwork) {
		t.Errorf("beyond the limit: %v", err)
	}
}

// TestReadJSONBrokenConnection: an answer whose connection breaks
// mid-body (reset, or closed short of its length) is a network failure,
// the outcome unknown, not an answer that is not JSON.
func TestReadJSONBrokenConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reset bool
	}{{"reset mid-body", true}, {"closed mid-body", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(200)
				io.WriteString(w, `{"A":`)
				w.(http.Flusher).Flush()
				conn, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				if tc.reset {
					conn.(*net.TCPConn).SetLinger(0)
				}
				conn.Close()
			}))
			t.Cleanup(srv.Close)
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			var v struct{ A int }
			if err := httpclient.ReadJSON(resp, &v, 0); !errors.Is(err, dbsync.ErrNetwork) || errors.Is(err, dbsync.ErrBadResponse) {
				t.Fatalf("ReadJSON: %v, want ErrNetwork only", err)
			}
		})
	}
}
