package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// bigRequest is a push request of e's node, signed over an empty body,
// whose body is g (chunked unless withLength).
func (e *env) bigRequest(g *synctest.GenBody, size int64, withLength bool, opts ...opt) *http.Request {
	req := e.request(http.MethodPost, "push", "", nil, opts...)
	req.Body = io.NopCloser(g)
	req.ContentLength = -1
	if withLength {
		req.ContentLength = size
	}
	return req
}

// bigPushBody returns the JSON of a push inserting n lists (about 70 bytes
// each, plus pad bytes added to every name) at the server's latest version.
func (e *env) bigPushBody(n, pad int) []byte {
	e.t.Helper()
	latest := e.latest()
	req := &protocol.PushRequest{PushID: uuid.NewString(), LatestVersionID: &latest, Payload: protocol.Payload{}}
	for i := range n {
		id := int64(1000 + i)
		row, _ := json.Marshal(map[string]any{"id": id, "name": fmt.Sprintf("list %d%s", id, strings.Repeat("-", pad))})
		req.Operations = append(req.Operations, protocol.Operation{Order: int64(i + 1), Table: "lists", RowID: strconv.FormatInt(id, 10), Command: models.Insert})
		req.Payload["lists"] = append(req.Payload["lists"], row)
	}
	b, err := json.Marshal(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// spoolFiles counts the files in dir.
func spoolFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestPreBodyChecks (issue 14): a request refused by its headers is
// answered before its body is read, and a body whose signature fails does
// not use up its nonce.
func TestPreBodyChecks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{handlers: &handlers.Config{SpoolDir: t.TempDir()}})
			used := protocol.NewNonce()
			if status, raw, _ := e.push(e.pushBody(1, "home"), withNonce(used)); status != http.StatusOK {
				t.Fatalf("push: %d %s", status, raw)
			}
			before := e.state()
			const size = 256 << 20
			// Not here: an unknown node, answered like a wrong signature,
			// after the body (TestUnknownNodeAnswer), so ids cannot be probed.
			for _, c := range []struct {
				name   string
				opts   []opt
				status int
				code   string
			}{
				{"unsigned", []opt{unsigned()}, 401, protocol.CodeUnauthorized},
				{"old timestamp", []opt{withTime(time.Now().Add(-time.Hour))}, 401, protocol.CodeUnauthorized},
				{"future timestamp", []opt{withTime(time.Now().Add(time.Hour))}, 401, protocol.CodeUnauthorized},
				{"malformed nonce", []opt{withNonce("XYZ")}, 401, protocol.CodeUnauthorized},
				{"used nonce", []opt{withNonce(used)}, 401, protocol.CodeReplay},
				{"malformed signature", []opt{setHeader(protocol.HeaderSignature, "00")}, 401, protocol.CodeUnauthorized},
				{"malformed node", []opt{setHeader(protocol.HeaderNode, "x")}, 401, protocol.CodeUnauthorized},
				{"protocol", []opt{setHeader(protocol.HeaderProtocol, "0")}, 400, protocol.CodeProtocolVersion},
				{"schema", []opt{setHeader(protocol.HeaderSchema, "0123")}, 409, protocol.CodeSchemaMismatch},
			} {
				for _, withLength := range []bool{false, true} {
					g := synctest.NewGenBody(size, 0)
					status, raw, d := e.do(e.bigRequest(g, size, withLength, c.opts...))
					if status != c.status || d.Code != c.code {
						t.Fatalf("%s (length %v): %d %s, want %d %s", c.name, withLength, status, raw, c.status, c.code)
					}
					// Only what the connection buffers was sent.
					if n := g.BytesRead(); n >= size/2 {
						t.Fatalf("%s (length %v): %d bytes of the body sent before the answer", c.name, withLength, n)
					}
				}
			}
			e.unchanged(before, "requests refused by their headers")

			// A wrong signature does not spend the nonce.
			nonce := protocol.NewNonce()
			if status, raw, d := e.push(e.pushBody(2, "work"), withNonce(nonce), withSecret("wrong")); status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
				t.Fatalf("push with a wrong signature: %d %s", status, raw)
			}
			if status, raw, _ := e.push(e.pushBody(2, "work"), withNonce(nonce)); status != http.StatusOK {
				t.Fatalf("push with the nonce of a refused request: %d %s", status, raw)
			}
		})
	}
}

// TestPreauthBudget (issue 14): bodies not yet authenticated hold at most
// Config.PreauthMemory of memory and PreauthDisk of disk across requests;
// beyond, 503 busy with Retry-After. Large bodies are spooled to files
// without a name, and a legitimate large push goes through the spool.
func TestPreauthBudget(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e := newEnv(t, kind, &envConfig{handlers: &handlers.Config{
				PreauthMemory: 128 << 10, PreauthDisk: 100 << 20, SpoolDir: dir,
			}})
			busy := func(what string, req func() *http.Request) {
				t.Helper()
				resp, err := http.DefaultClient.Do(req())
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
					t.Fatalf("%s: %d (Retry-After %q), want 503 with Retry-After", what, resp.StatusCode, resp.Header.Get("Retry-After"))
				}
				// The body is JSON with the code.
				if status, raw, d := e.do(req()); status != http.StatusServiceUnavailable || d.Code != protocol.CodeBusy {
					t.Fatalf("%s: %d %s", what, status, raw)
				}
			}
			before := e.state()

			// Two unauthenticated bodies in progress hold the memory
			// budget: their buffers of 64 KiB. They are read (more than
			// the connection buffers took) and spooled to unlinked files.
			const hold = 48 << 20
			holders := []*synctest.GenBody{synctest.NewGenBody(hold+1, hold), synctest.NewGenBody(hold+1, hold)}
			var wg sync.WaitGroup
			var once sync.Once
			release := func() {
				once.Do(func() {
					for _, g := range holders {
						g.Release()
					}
				})
				wg.Wait()
			}
			defer release()
			for _, g := range holders {
				req := e.bigRequest(g, 0, false)
				wg.Go(func() {
					if status, raw, d := e.do(req); status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
						t.Errorf("held body: %d %s", status, raw)
					}
				})
				<-g.Held()
			}
			if n := spoolFiles(t, dir); n != 0 {
				t.Errorf("%d spool files visible while bodies are spooled", n)
			}
			pull := func() *http.Request {
				return e.request(http.MethodPost, "pull", "", []byte(`{"latest_version_id":0}`))
			}
			busy("pull while the memory budget is in use", pull)
			release()
			if status, raw, _ := e.do(pull()); status != http.StatusOK {
				t.Fatalf("pull once the budget is free: %d %s", status, raw)
			}

			// The disk budget: a body announced larger is refused before it
			// is read, one of unknown length once it outgrows it.
			var announced []*synctest.GenBody
			busy("push of 200 MiB announced", func() *http.Request {
				announced = append(announced, synctest.NewGenBody(200<<20, 0))
				return e.bigRequest(announced[len(announced)-1], 200<<20, true)
			})
			for _, g := range announced {
				if n := g.BytesRead(); n >= 100<<20 {
					t.Fatalf("%d bytes of a body announced too large were read", n)
				}
			}
			busy("push of 150 MiB chunked", func() *http.Request { return e.bigRequest(synctest.NewGenBody(150<<20, 0), 0, false) })
			e.unchanged(before, "busy answers")

			// A legitimate push larger than what stays in memory: 1200
			// rows of 2000 bytes (the bytes spool; few rows, as each
			// costs the server's apply, slow under the race detector).
			big := e.bigPushBody(1200, 2000)
			if len(big) < 2<<20 {
				t.Fatalf("push of %d bytes is not spooled", len(big))
			}
			if status, raw, _ := e.push(big); status != http.StatusOK {
				t.Fatalf("push of %d bytes: %d %.300s", len(big), status, raw)
			}
			if status, raw, _ := e.do(e.request(http.MethodPost, "push", "", nil, withSentBody(big))); status != http.StatusUnauthorized {
				t.Fatalf("push of %d bytes signed over another body: %d %.300s", len(big), status, raw)
			}
			if n := spoolFiles(t, dir); n != 0 {
				t.Fatalf("%d spool files left", n)
			}
		})
	}
}

// TestPreauthHoldsWhatArrived: a body not yet authenticated holds of the
// budgets what it sent, not what its Content-Length announces. A party
// without the secret announcing 99 MiB (spooled) or 1 MiB (in memory) and
// sending a trickle held it all, for as long as the read deadlines let it
// trickle (1 GiB at 32 KiB/s: 9 hours), and every node's push got 503
// busy meanwhile; legitimate pushes go through now. And a body still
// arriving when its request's timestamp window closes is not read
// further (the request is refused for it once read): a 64 MiB body was
// read whole, and one sent fast and then stalled was waited for until the
// rate deadline.
func TestPreauthHoldsWhatArrived(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, &envConfig{
				server:   &server.Config{ClockSkew: time.Second},
				handlers: &handlers.Config{PreauthMemory: 1536 << 10, PreauthDisk: 100 << 20, SpoolDir: t.TempDir()},
			})
			var wg sync.WaitGroup
			t.Cleanup(wg.Wait) // (after the trickles' cleanups)
			// trickle sends the first at bytes of a body of size, and
			// holds until the test ends (its connection closed then).
			trickle := func(size, at int64) {
				g := synctest.NewGenBody(size, at)
				ctx, cancel := context.WithCancel(ctx)
				req := e.bigRequest(g, size, true, withSecret("not the secret")).WithContext(ctx)
				wg.Go(func() {
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				})
				t.Cleanup(func() { cancel(); g.Release() })
				<-g.Held()
			}
			trickle(99<<20, 256<<10)
			trickle(1<<20, 16<<10)
			for _, c := range []struct {
				name string
				rows int
			}{{"spooled", 1200}, {"in memory", 300}} {
				body := e.bigPushBody(c.rows, 2000)
				if spooled := len(body) > httpx.SmallBody; spooled != (c.name == "spooled") {
					t.Fatalf("%s push of %d bytes", c.name, len(body))
				}
				if status, raw, _ := e.push(body); status != http.StatusOK {
					t.Fatalf("%s push of %d bytes while two unauthenticated bodies trickle: %d %.300s", c.name, len(body), status, raw)
				}
			}

			// A body sent fast and then stalled: refused once its window
			// (ClockSkew 1 s) closes. Its read waited for the rate
			// deadline (10 s plus 32 KiB/s: 6 minutes for 12 MiB),
			// holding what it sent (a reviewer found it).
			stalled := synctest.NewGenBody(13<<20, 12<<20)
			synctest.Stalled(t, e.bigRequest(stalled, 13<<20, true, withSecret("not the secret")), stalled, http.StatusUnauthorized, 5*time.Second)

			// The window: ClockSkew 1 s.
			g := synctest.NewGenBody(64<<20, 64<<10)
			req := e.bigRequest(g, 64<<20, true)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if status, raw, d := e.do(req); status != http.StatusUnauthorized || d.Code != protocol.CodeUnauthorized {
					t.Errorf("a body still arriving when the window closed: %d %.300s, want 401", status, raw)
				}
			}()
			<-g.Held()
			time.Sleep(1500 * time.Millisecond)
			g.Release()
			<-done
			if n := g.BytesRead(); n > 16<<20 {
				t.Errorf("%d MiB of a body read past its window", n>>20)
			}
		})
	}
}
