package peerhttp_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

// lockedBuffer is a log destination the handler may write from its
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHandlerLogsInternalErrors: an internal error is answered "internal
// error (request …)" without its text, which goes to Config.Logger with
// the request id. Before, the handler had no logger: the text went
// nowhere, and the failure could not be diagnosed on either node.
func TestHandlerLogsInternalErrors(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var log lockedBuffer
			e := newPeerEnv(t, kind, &peerhttp.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			// The nonces' table gone, authenticating a request fails
			// inside the node.
			if _, err := e.node.DB().ExecContext(ctx, "DROP TABLE sync_lww_nonces"); err != nil {
				t.Fatal(err)
			}
			status, raw, code := e.do(e.request(http.MethodGet, "hello", "", nil))
			if status != http.StatusInternalServerError || code != protocol.CodeInternal {
				t.Fatalf("hello: %d %s, want 500 %s", status, raw, protocol.CodeInternal)
			}
			dbtest.NoDatabaseText(t, "sync_lww_nonces", string(raw))
			if got := log.String(); !strings.Contains(got, "sync_lww_nonces") || !strings.Contains(got, "request_id=") {
				t.Fatalf("the handler's log %q does not hold the internal error with its request id", got)
			}
		})
	}
}
