package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// countRefused is an http.RoundTripper counting the 401 answers it carries.
type countRefused struct {
	next    http.RoundTripper
	refused atomic.Int64
}

func (c *countRefused) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		c.refused.Add(1)
	}
	return resp, err
}

// TestNodeClockOff: a node whose clock (client.Config.Now) is hours off,
// ahead or behind, syncs over HTTP all the same. Its first signed request
// is refused for its timestamp with the server's time, signed for the
// node and that request; the transport checks the signature, corrects the
// timestamps it signs (Client.ClockOffset) and sends the request again;
// every later request is accepted at once. Before, every request of such
// a node was refused (401) for as long as its clock stayed off.
func TestNodeClockOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		for _, off := range []time.Duration{3 * time.Hour, -26 * time.Hour} {
			t.Run(kind+"/"+off.String(), func(t *testing.T) {
				t.Parallel()
				srv := synctest.NewServer(t, kind, nil)
				rt := &countRefused{next: http.DefaultTransport}
				a := synctest.NewClient(t, srv, "a", &client.Config{
					Now:        func() time.Time { return time.Now().Add(off) },
					HTTPClient: &http.Client{Transport: rt},
				})
				b := synctest.NewClient(t, srv, "b", nil)
				relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('from a node whose clock is off')")
				for range 2 {
					if _, err := a.Sync(ctx); err != nil {
						t.Fatalf("a syncs with its clock %s off: %v", off, err)
					}
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
					t.Fatalf("a and b differ:\n%s", d)
				}
				if got := a.ClockOffset(); (got + off).Abs() > time.Minute {
					t.Errorf("ClockOffset %s, want about %s", got, -off)
				}
				if n := rt.refused.Load(); n != 1 {
					t.Errorf("%d requests refused, want 1 (the first)", n)
				}
			})
		}
	}
}

// TestNodeClockOffForgedTime: a server time the node cannot verify (a
// party between node and server changed it, or an answer to a node the
// server does not know) corrects nothing: the request fails with a
// *dbsync.ClockError wrapping dbsync.ErrUnauthorized, and the offset stays
// 0.
func TestNodeClockOffForgedTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
	target, err := url.Parse(srv.HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode != http.StatusUnauthorized {
			return nil
		}
		var body protocol.ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		_ = resp.Body.Close()
		body.Error.ServerTime += int64(time.Hour / time.Millisecond) // an hour later than the server says
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		resp.ContentLength = int64(len(raw))
		resp.Header.Set("Content-Length", strconv.Itoa(len(raw)))
		return nil
	}
	ps := httptest.NewServer(proxy)
	t.Cleanup(ps.Close)
	a := synctest.NewClient(t, srv, "a", &client.Config{
		URL: ps.URL + "/sync",
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) },
	})
	_, err = a.Sync(ctx)
	var ce *dbsync.ClockError
	if !errors.As(err, &ce) || !errors.Is(err, dbsync.ErrUnauthorized) {
		t.Fatalf("sync through the forging proxy: %v, want a *dbsync.ClockError wrapping dbsync.ErrUnauthorized", err)
	}
	if got := a.ClockOffset(); got != 0 {
		t.Fatalf("ClockOffset %s after a forged server time, want 0", got)
	}
}
