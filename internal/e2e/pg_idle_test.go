package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// TestSlowReaderOutlastsIdleTimeout: a PostgreSQL server whose
// connections have idle_in_transaction_session_timeout set (here 300 ms,
// in its connection string) answers a pull and a repair to a node that
// stops reading the answer for longer than that. The server streams the
// answer from a read transaction and, while it waits for the node to
// read, its backend is idle in transaction; before, the timeout ended the
// backend and the answer with it (the node got the stream's error line).
// Small socket buffers make the server wait on the node; the node pauses
// once the server's backend has been idle in transaction for a while.
func TestSlowReaderOutlastsIdleTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	for _, op := range []string{"pull", "repair"} {
		// One at a time: each holds a few PostgreSQL connections.
		t.Run(op, func(t *testing.T) {
			base := dbtest.PostgresSchemaURL(t)
			var rnd [6]byte
			_, _ = rand.Read(rnd[:])
			app := "dbsync_idle_" + hex.EncodeToString(rnd[:])
			db, err := dbtest.OpenPostgres(base + "&application_name=" + app +
				"&idle_in_transaction_session_timeout=" + strconv.FormatInt(timeout.Milliseconds(), 10))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			admin, err := dbtest.OpenPostgres(base)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = admin.Close() })
			if err := testmodels.CreateSchema(ctx, admin); err != nil {
				t.Fatal(err)
			}
			// Installed first without the timeout: on a busy machine,
			// under the race detector, the install's transactions can sit
			// idle between statements for longer than 300 ms (CI saw
			// "terminating connection due to idle-in-transaction
			// timeout" in migration 0001). The server below finds it all
			// in place.
			synctest.NewHandler(t, admin, testmodels.All(), nil)
			_, h := synctest.NewHandler(t, db, testmodels.All(), &server.Config{ChunkSize: 50})
			hs := newSmallBufferServer(t, h) + "/sync"
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: hs})
			relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('l')")
			relExec(t, a.DB, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO todos (list_id, title) SELECT (SELECT id FROM lists), 'todo number ' || i || ' ' || hex(zeroblob(100)) FROM n")
			if _, err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}

			// The node's reader: before its first read of the answer, it
			// waits until the server's backend has been idle in
			// transaction for 50 ms (the server waits on the node), then
			// for three times the timeout.
			var once sync.Once
			waited := false
			pause := func() {
				once.Do(func() {
					deadline := time.Now().Add(time.Minute)
					for time.Now().Before(deadline) {
						var n int
						err := admin.NewRaw("SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND state = 'idle in transaction' AND now() - state_change > interval '50 milliseconds'", app).Scan(ctx, &n)
						if err != nil {
							t.Errorf("read pg_stat_activity: %v", err)
							return
						}
						if n > 0 {
							waited = true
							time.Sleep(3 * timeout)
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
			}
			tr := newSmallBufferTransport()
			t.Cleanup(tr.CloseIdleConnections)
			hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := tr.RoundTrip(r)
				if err == nil && (strings.HasSuffix(r.URL.Path, "/pull") || strings.HasSuffix(r.URL.Path, "/repair")) {
					resp.Body = &pausingBody{ReadCloser: resp.Body, pause: pause}
				}
				return resp, err
			})}
			b := synctest.NewClient(t, nil, "b", &client.Config{URL: hs, HTTPClient: hc})
			if op == "pull" {
				_, err = b.Pull(ctx)
			} else {
				_, err = b.Repair(ctx, nil)
			}
			if !waited {
				t.Fatalf("the server never waited on the node inside its transaction (answer %v)", err)
			}
			if err != nil {
				t.Fatalf("%s by a slow reader: %v", op, err)
			}
			if d := synctest.Diff(synctest.Dump(t, b.DB, b.Reg), synctest.Dump(t, db, b.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}

// pausingBody calls pause before its first read.
type pausingBody struct {
	io.ReadCloser
	pause func()
}

func (b *pausingBody) Read(p []byte) (int, error) {
	b.pause()
	return b.ReadCloser.Read(p)
}

// newSmallBufferTransport returns a transport whose connections have a
// small receive buffer.
func newSmallBufferTransport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(8 << 10)
			}
			return c, err
		},
	}
}

// newSmallBufferServer serves h on a loopback listener whose connections
// have a small send buffer, and returns its URL.
func newSmallBufferServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(smallBufferListener{ln}) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String()
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}
