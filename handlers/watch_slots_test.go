package handlers_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestWatchSlotsNotHeldBeforeAuth: an outsider, who knows no node's
// secret, cannot hold the server's watch slots (Config.MaxWatchers): a
// GET /watch announcing a body it never sends, signed with any node id
// and any signature, is refused before it waits for its body. Before,
// the slot was taken first and held while the body was awaited (up to
// Deadlines.BodyGrace, 10 s, for a one-byte body), so MaxWatchers such
// connections, renewed every few seconds, answered every node's watch
// 503 busy.
func TestWatchSlotsNotHeldBeforeAuth(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, MaxWatchers: 2}
			e := newEnv(t, kind, &envConfig{handlers: cfg})
			u, err := url.Parse(e.url)
			if err != nil {
				t.Fatal(err)
			}
			var conns []net.Conn
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			for i := range cfg.MaxWatchers {
				c, err := net.Dial("tcp", u.Host)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				req := "GET " + u.Path + "/watch?after=0 HTTP/1.1\r\nHost: " + u.Host + "\r\n" +
					protocol.HeaderProtocol + ": " + strconv.Itoa(protocol.ProtocolVersion) + "\r\n" +
					protocol.HeaderSchema + ": " + e.s.Reg.Fingerprint() + "\r\n" +
					protocol.HeaderNode + ": " + strconv.Itoa(999000+i) + "\r\n" +
					protocol.HeaderTimestamp + ": " + strconv.FormatInt(time.Now().UnixMilli(), 10) + "\r\n" +
					protocol.HeaderNonce + ": " + protocol.NewNonce() + "\r\n" +
					protocol.HeaderSignature + ": " + strings.Repeat("0", 64) + "\r\n" +
					"Content-Length: 1\r\n\r\n" // and no body
				if _, err := fmt.Fprint(c, req); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond) // the outsider's requests reach the handler
			status, raw, _ := e.do(e.request(http.MethodGet, "watch", watchQuery(e.latest(), 10*time.Millisecond), nil))
			if status != http.StatusOK {
				t.Fatalf("the node's watch while an outsider holds %d unfinished requests: %d %s, want 200", cfg.MaxWatchers, status, raw)
			}
		})
	}
}

// TestWatchSlotsPerNode: one node holds at most Config.MaxWatchersPerNode
// watch requests at once (one more is answered 503 busy), so that it
// cannot take every slot of MaxWatchers: another node's watch is still
// held. Before, a single authenticated node could hold every slot and
// have every other node's watch answered 503 busy.
func TestWatchSlotsPerNode(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// MaxWatchersPerNode is left at its default, 4.
			const perNode = 4
			cfg := &handlers.Config{Registration: handlers.RateLimit{Every: -1}, WatchTimeout: time.Hour, MaxWatchers: perNode + 1}
			e := newEnv(t, kind, &envConfig{handlers: cfg})
			t.Cleanup(func() { _ = e.s.Srv.Close() }) // answers the held requests
			status, raw := e.register(`{"extra_data":{"token":"open sesame"}}`)
			if status != http.StatusOK {
				t.Fatalf("register: %d %s", status, raw)
			}
			var other protocol.RegisterResponse
			if err := json.Unmarshal(raw, &other); err != nil {
				t.Fatal(err)
			}
			v := e.latest()
			var held []<-chan answer
			for range perNode {
				held = append(held, send(e.request(http.MethodGet, "watch", watchQuery(v, 0), nil)))
			}
			parked(t, e.s.Srv, perNode)
			status, raw, d := e.do(e.request(http.MethodGet, "watch", watchQuery(v, 10*time.Millisecond), nil))
			if status != http.StatusServiceUnavailable || d.Code != protocol.CodeBusy {
				t.Fatalf("watch %d of one node: %d %s, want 503 busy", perNode+1, status, raw)
			}
			o := &env{t: t, s: e.s, url: e.url, node: other.Node}
			if status, raw, _ := o.do(o.request(http.MethodGet, "watch", watchQuery(v, 10*time.Millisecond), nil)); status != http.StatusOK {
				t.Fatalf("another node's watch while one node holds %d: %d %s, want 200", perNode, status, raw)
			}
			// The node's slots come back as its requests end.
			if status, raw, _ := e.push(e.pushBody(1, "home")); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			for _, ch := range held {
				if a := receive(t, ch); a.status != http.StatusOK {
					t.Fatalf("held watch after a push: %d %s", a.status, a.body)
				}
			}
			if status, raw, _ := e.do(e.request(http.MethodGet, "watch", watchQuery(e.latest(), 10*time.Millisecond), nil)); status != http.StatusOK {
				t.Fatalf("the node's watch once its requests were answered: %d %s", status, raw)
			}
		})
	}
}
