package handlers_test

import (
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
