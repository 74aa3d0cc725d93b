package handlers_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// smallBuffers shrinks the send buffer of accepted connections, so that a
// client that stops reading blocks the server's writes after a few KiB.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// TestHTTPServerCutsSlowClients: over real TCP, NewHTTPServer and the
// handler's deadlines cut a client that sends its headers slowly, one that
// sends its body slowly, an idle keep-alive connection and a client that
// stops reading a pull stream, while two nodes keep syncing.
func TestHTTPServerCutsSlowClients(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			const limit = time.Second
			var stalledNode atomic.Int64
			stalled := make(chan error, 1)
			s := synctest.NewServer(t, kind, &server.Config{OnEvent: func(_ context.Context, e dbsync.Event) {
				if e.Op == "pull" && e.NodeID != 0 && e.NodeID == stalledNode.Load() {
					stalled <- e.Err
				}
			}})
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(s.Srv, &handlers.Config{
				Registration: handlers.RateLimit{Every: -1},
				Deadlines:    handlers.Deadlines{BodyRate: 1 << 20, BodyGrace: limit, Write: limit},
			}))
			// serve listens on a loopback port; the stalled pull gets one of
			// its own whose connections have small buffers.
			serve := func(small bool) string {
				hs := handlers.NewHTTPServer("", r, &handlers.ServerConfig{ReadHeaderTimeout: limit, IdleTimeout: 2 * limit})
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = hs.Close() })
				if small {
					go func() { _ = hs.Serve(smallBuffers{ln}) }()
				} else {
					go func() { _ = hs.Serve(ln) }()
				}
				return ln.Addr().String()
			}
			addr, smallAddr := serve(false), serve(true)
			ts := *s
			ts.URL = "http://" + addr + "/sync"

			// Rows enough for a pull stream far larger than the buffers.
			lists := make([]testmodels.List, 1000)
			for i := range lists {
				lists[i] = testmodels.List{ID: int64(i + 1), Name: fmt.Sprintf("list %d with a name long enough to fill buffers", i)}
			}
			if _, err := s.DB.NewInsert().Model(&lists).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}

			// Two nodes sync again and again until every slow client is cut:
			// one adds a list each time, the other pulls it.
			// Their idle connections close before the server's IdleTimeout.
			hc := &http.Client{Transport: &http.Transport{IdleConnTimeout: limit / 4}}
			nodes := []*synctest.Client{
				synctest.NewClient(t, &ts, "a", &client.Config{HTTPClient: hc}),
				synctest.NewClient(t, &ts, "b", &client.Config{HTTPClient: hc}),
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			syncs := make([]int, len(nodes))
			errs := make([]error, len(nodes))
			for i, n := range nodes {
				wg.Go(func() {
					for k := 0; ; k++ {
						select {
						case <-stop:
							if k >= 3 {
								return
							}
						default:
						}
						if _, err := n.Sync(ctx); err != nil {
							errs[i] = fmt.Errorf("sync %d of %s: %w", k, n.Name, err)
							return
						}
						syncs[i]++
						if i > 0 {
							continue // one writer: the nodes never push past each other
						}
						if _, err := n.DB.NewInsert().Model(&testmodels.List{Name: fmt.Sprintf("%s-%d", n.Name, k)}).Exec(ctx); err != nil {
							errs[i] = err
							return
						}
					}
				})
			}

			// cut waits until the server closes conn, reading what it sends.
			cut := func(what string, conn net.Conn, r io.Reader) {
				t.Helper()
				_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
				_, err := io.Copy(io.Discard, r)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s: the server did not close the connection", what)
				}
			}
			dial := func(addr string) net.Conn {
				t.Helper()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				return conn
			}
			headers := func(method, path string, length int) string {
				return fmt.Sprintf("%s /sync/%s HTTP/1.1\r\nHost: x\r\n%s: %d\r\n%s: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
					method, path, protocol.HeaderProtocol, protocol.ProtocolVersion, protocol.HeaderSchema, s.Reg.Fingerprint(), length)
			}
			var attacks sync.WaitGroup
			attacks.Go(func() { // headers that never end
				conn := dial(addr)
				if _, err := io.WriteString(conn, headers("POST", "register", 2)); err != nil {
					t.Error(err)
				}
				cut("slow headers", conn, conn)
			})
			attacks.Go(func() { // a body that stops after a few bytes
				conn := dial(addr)
				if _, err := io.WriteString(conn, headers("POST", "register", 1000)+"\r\n{\"extra"); err != nil {
					t.Error(err)
				}
				cut("slow body", conn, conn)
			})
			attacks.Go(func() { // a keep-alive connection left idle
				conn := dial(addr)
				if _, err := io.WriteString(conn, "GET /sync/nowhere HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Error(err)
				}
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound || resp.Close {
					t.Errorf("request before idling: %d, close %v", resp.StatusCode, resp.Close)
				}
				cut("idle keep-alive", conn, br)
			})
			attacks.Go(func() { // a pull whose stream is never read
				reg, err := s.Srv.Register(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				stalledNode.Store(reg.Node.NodeID)
				conn := dial(smallAddr)
				_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
				body := []byte(`{}`)
				sg := protocol.Signed{Endpoint: "pull", NodeID: reg.Node.NodeID, Timestamp: time.Now().UnixMilli(), Nonce: protocol.NewNonce(), Body: body}
				req := headers("POST", "pull", len(body)) + fmt.Sprintf("%s: %d\r\n%s: %d\r\n%s: %s\r\n%s: %s\r\n\r\n%s",
					protocol.HeaderNode, sg.NodeID, protocol.HeaderTimestamp, sg.Timestamp, protocol.HeaderNonce, sg.Nonce,
					protocol.HeaderSignature, sg.Sign(reg.Node.Secret), body)
				if _, err := io.WriteString(conn, req); err != nil {
					t.Error(err)
					return
				}
				select {
				case err := <-stalled:
					if err == nil {
						t.Errorf("the pull to a client that stopped reading completed")
					}
				case <-time.After(15 * time.Second):
					t.Errorf("the pull to a client that stopped reading was not cut")
				}
			})
			attacks.Wait()
			close(stop)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
				if syncs[i] < 3 {
					t.Fatalf("node %s synced %d times", nodes[i].Name, syncs[i])
				}
			}
			t.Logf("syncs while the slow clients were cut: %v", syncs)
		})
	}
}

// TestHTTPServerCutsUnreadBodies: over real TCP, a request refused before
// its body is read (unsigned, unknown path, rate-limited registration)
// whose body then stalls is answered, and its connection closed, within
// the body's deadline. Before, the server read the rest of the body
// (net/http does, up to 256 KiB, to reuse the connection) with no
// deadline, before it sent the answer: a client sending a few bytes of a
// declared body held a connection and its goroutine for as long as it
// liked, and any number of them.
func TestHTTPServerCutsUnreadBodies(t *testing.T) {
	t.Parallel()
	s := synctest.NewServer(t, dbtest.KindSQLite, nil)
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(s.Srv, &handlers.Config{
		Registration: handlers.RateLimit{Every: time.Hour, Burst: 1},
		Deadlines:    handlers.Deadlines{BodyRate: 1 << 20, BodyGrace: 200 * time.Millisecond, Write: time.Second},
	}))
	hs := handlers.NewHTTPServer("", r, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Close() })
	go func() { _ = hs.Serve(ln) }()
	if _, err := s.Srv.Register(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// The one registration the address may make.
	if resp, err := http.Post("http://"+ln.Addr().String()+"/sync/register", "application/json", nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	for _, c := range []struct {
		name, method, path string
		status             int
	}{
		{"unsigned push", "POST", "push", http.StatusUnauthorized},
		{"unknown path", "POST", "nowhere", http.StatusNotFound},
		{"registration beyond the rate", "POST", "register", http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// 3 bytes of a body of 1000, then nothing.
			if _, err := fmt.Fprintf(conn, "%s /sync/%s HTTP/1.1\r\nHost: x\r\n%s: %d\r\n%s: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a",
				c.method, c.path, protocol.HeaderProtocol, protocol.ProtocolVersion, protocol.HeaderSchema, s.Reg.Fingerprint()); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("answer %d, want %d", resp.StatusCode, c.status)
			}
			_, err = io.Copy(io.Discard, br)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the server did not close the connection")
			}
		})
	}
}
