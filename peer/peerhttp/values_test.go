package peerhttp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestApplyRefusesUnstorableValues: a peer's row with a value the node's
// database cannot store and read back as sent (a time outside UTC years
// 1-9999, text with a NUL, JSON holding \u0000), or a version whose clock
// is not a time, is refused with 400 and writes nothing; stored, such a
// row broke the node's own feed for every peer.
func TestApplyRefusesUnstorableValues(t *testing.T) {
	t.Parallel()
	note := func(e *peerEnv, created, body, meta string) peer.Change {
		id := uuid.NewString()
		row := fmt.Sprintf(`{"id":%q,"body":%s,"created":%q,"count":1,"data":null,"score":null,"tag":null,"meta":%s}`, id, body, created, meta)
		return peer.Change{Table: "notes", ID: id, HLC: time.Now().UnixMilli() << 16, Node: e.from.String(), Row: json.RawMessage(row), Seq: 1}
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			for _, tc := range []struct{ name, created, body, meta string }{
				{"year 0", "0000-06-01T00:00:00Z", `"x"`, "null"},
				{"year 0 in UTC", "0001-01-01T00:00:00+01:00", `"x"`, "null"},
				{"year 10000 in UTC", "9999-12-31T23:30:00-01:00", `"x"`, "null"},
				{"NUL in text", "2024-01-01T00:00:00Z", `"a\u0000b"`, "null"},
				{"NUL in JSON", "2024-01-01T00:00:00Z", `"x"`, `{"a":"\u0000"}`},
			} {
				before := e.state()
				status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", applyBody(t, e.node, note(e, tc.created, tc.body, tc.meta))))
				var body protocol.ErrorBody
				if err := json.Unmarshal(raw, &body); status != http.StatusBadRequest || err != nil || body.Error.Code != protocol.CodeBadRequest {
					t.Errorf("%s: %d %s, want 400 bad_request", tc.name, status, raw)
				}
				if after := e.state(); after != before {
					t.Errorf("%s: the node changed: %+v, was %+v", tc.name, after, before)
				}
			}
			// A clock that is not a time (zero or negative) is refused too.
			for _, hlc := range []int64{0, -1 << 40} {
				before := e.state()
				c := note(e, "2024-01-01T00:00:00Z", `"x"`, "null")
				c.HLC = hlc
				status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", applyBody(t, e.node, c)))
				if status != http.StatusBadRequest {
					t.Errorf("clock %d: %d %s, want 400", hlc, status, raw)
				}
				if after := e.state(); after != before {
					t.Errorf("clock %d: the node changed", hlc)
				}
			}
			// The node still serves its feed to an honest peer.
			honest := newPeerNode(t, kind)
			if _, err := honest.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: honest}); err != nil {
				t.Errorf("honest sync: %v", err)
			}
		})
	}
}

// TestAnswerBounded: a peer's answer longer than Peer.MaxAnswer fails the
// call once that much is read; the rest is not read.
func TestAnswerBounded(t *testing.T) {
	t.Parallel()
	victim := newPeerNode(t, dbtest.KindSQLite)
	var served atomic.Int64
	chunk := []byte(strings.Repeat("a", 64<<10))
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node":"`))
		for range 1024 { // 64 MiB in one JSON string
			n, err := w.Write(chunk)
			served.Add(int64(n))
			if err != nil {
				return
			}
		}
		_, _ = w.Write([]byte(`","schema":"x"}`))
	}))
	t.Cleanup(fake.Close)
	_, err := (&peerhttp.Peer{URL: fake.URL, Secret: meshSecret, Self: victim, MaxAnswer: 256 << 10}).ID(ctx)
	if err == nil {
		t.Fatal("a 64 MiB answer over a 256 KiB bound was accepted")
	}
	fake.CloseClientConnections()
	fake.Close() // waits for the handler
	if n := served.Load(); n >= 32<<20 {
		t.Fatalf("the client read %d MiB of an answer bounded to 256 KiB", n>>20)
	}
}

// TestCursorBeyondFeed: a node's cursor for a peer set beyond that peer's
// feed (a page's Last from elsewhere, or the peer restored from a backup)
// makes the peer resend its whole state at the next sync, instead of
// never sending its new writes.
func TestCursorBeyondFeed(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil) // node B, served
			a := newPeerNode(t, kind)
			e.from = a.ID() // a page in A's name
			raw, err := json.Marshal(peer.Batch{Changes: []peer.Change{}, Last: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			if status, body, _ := e.do(e.request(http.MethodPost, "apply", "", append(raw, '\n'))); status != http.StatusOK {
				t.Fatalf("%d %s", status, body)
			}
			n := &testmodels.Note{ID: uuid.New(), Body: "A's write", Created: time.Now().UTC()}
			if _, err := a.DB().NewInsert().Model(n).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx, &peerhttp.Peer{URL: e.url, Secret: meshSecret, Self: a}); err != nil {
				t.Fatal(err)
			}
			var c int
			if err := e.node.DB().QueryRowContext(ctx, "SELECT count(*) FROM notes WHERE id = ?", n.ID).Scan(&c); err != nil {
				t.Fatal(err)
			}
			if c != 1 {
				t.Errorf("B lacks A's note after a sync")
			}
		})
	}
}

// TestForgedAnswersRefused: an endpoint that answers at a peer's URL
// without the mesh secret (a spoofed address, plain HTTP on a LAN), or
// replays a real peer's answer to another request, gets nothing applied:
// answers are signed over the request's nonce and their body.
func TestForgedAnswersRefused(t *testing.T) {
	t.Parallel()
	victim := newPeerNode(t, dbtest.KindSQLite)
	fakeID := uuid.New()
	forged := noteChange(t, victim, fakeID, "written by someone without the secret", time.Now())
	var replay atomic.Value // a real answer's signature, sent again
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if sig, ok := replay.Load().(string); ok {
			w.Header().Set(peerhttp.HeaderAnswer, sig)
		}
		switch r.URL.Path {
		case "/hello": // the schema fingerprint is in the request's own header
			_ = json.NewEncoder(w).Encode(peerhttp.Hello{Node: fakeID.String(), Schema: r.Header.Get(protocol.HeaderSchema)})
		case "/changes":
			_ = json.NewEncoder(w).Encode(peer.Batch{Changes: []peer.Change{forged}, Last: 1})
		case "/cursor":
			_ = json.NewEncoder(w).Encode(peerhttp.CursorAnswer{})
		case "/apply":
			_ = json.NewEncoder(w).Encode(peerhttp.ApplyAnswer{})
		}
	}))
	t.Cleanup(fake.Close)
	// A real peer's signed answer, to replay.
	e := newPeerEnv(t, dbtest.KindSQLite, nil)
	req := e.request(http.MethodGet, "hello", "", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, sig := range []string{"", resp.Header.Get(peerhttp.HeaderAnswer)} {
		if sig != "" {
			replay.Store(sig)
		}
		_, err := victim.Sync(ctx, &peerhttp.Peer{URL: fake.URL, Secret: meshSecret, Self: victim})
		if !errors.Is(err, dbsync.ErrBadResponse) {
			t.Errorf("sync with a forged peer (replayed signature %v): %v, want dbsync.ErrBadResponse", sig != "", err)
		}
		var n int
		if err := victim.DB().QueryRowContext(ctx, "SELECT count(*) FROM notes WHERE id = ?", forged.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("the forged row was applied (%d, %v)", n, err)
		}
	}
}
