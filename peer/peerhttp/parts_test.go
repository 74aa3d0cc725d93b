package peerhttp_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

// partsTransport records the POST /apply requests a peerhttp.Peer sends,
// and cuts the connection (cut, with the request that ended in it) once
// cutAfter of them went through (0: never).
type partsTransport struct {
	mu       sync.Mutex
	sizes    []int64 // the body length of each POST /apply
	offsets  []int64 // and its offset (0 for a body sent whole)
	cutAfter int
	cut      func()
}

func (p *partsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost {
		return http.DefaultTransport.RoundTrip(r)
	}
	p.mu.Lock()
	p.sizes = append(p.sizes, r.ContentLength)
	var off int64
	fmt.Sscan(r.URL.Query().Get("offset"), &off)
	p.offsets = append(p.offsets, off)
	n := len(p.sizes)
	p.mu.Unlock()
	if p.cutAfter > 0 && n > p.cutAfter {
		if p.cut != nil {
			p.cut()
		}
		return nil, errors.New("connection cut between two parts")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// count returns a count of rows of n's database.
func count(t testing.TB, n *peer.Node, q string) int {
	t.Helper()
	var k int
	if err := n.DB().QueryRowContext(ctx, q).Scan(&k); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return k
}

// partsBacklog gives node a, already synced with b over peer, a backlog
// many times the limit of 4 KiB: a swap of two lists' unique names (the
// rows b holds are parked while the other is written), a list deleted
// with its todos, 30 new lists of 4 todos each whose names then change
// (each list's version comes after its todos' in a's feed: a child before
// its parent) and 20 notes of 1 KiB. b gets 40 notes of its own.
func partsBacklog(t testing.TB, a, b *peer.Node, p *peerhttp.Peer) {
	t.Helper()
	x, y, z := &testmodels.List{Name: "x"}, &testmodels.List{Name: "y"}, &testmodels.List{Name: "z"}
	for _, l := range []*testmodels.List{x, y, z} {
		if _, err := a.DB().NewInsert().Model(l).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.DB().NewInsert().Model(&[]*testmodels.Todo{{ListID: z.ID, Title: "z1"}, {ListID: z.ID, Title: "z2"}}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sync(ctx, p); err != nil {
		t.Fatalf("first sync, under the limit: %v", err)
	}
	tx, err := a.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"UPDATE lists SET name = 'swap' WHERE name = 'x'", "UPDATE lists SET name = 'x' WHERE name = 'y'", "UPDATE lists SET name = 'y' WHERE name = 'swap'"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB().NewDelete().Model((*testmodels.List)(nil)).Where("id = ?", z.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("t", 150)
	for i := range 30 {
		l := &testmodels.List{Name: fmt.Sprintf("list %d", i)}
		if _, err := a.DB().NewInsert().Model(l).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		todos := make([]*testmodels.Todo, 4)
		for j := range todos {
			todos[j] = &testmodels.Todo{ListID: l.ID, Title: fmt.Sprintf("%d.%d %s", i, j, pad)}
		}
		if _, err := a.DB().NewInsert().Model(&todos).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.DB().ExecContext(ctx, "UPDATE lists SET name = 'renamed ' || name WHERE name LIKE 'list %'"); err != nil {
		t.Fatal(err)
	}
	synctest.InsertNotes(t, a.DB(), 20, 1<<10)
	synctest.InsertNotes(t, b.DB(), 40, 1<<10)
}

// checkConverged fails unless a and b hold the same rows, all of the
// backlog (partsBacklog), and a further sync moves nothing either way.
func checkConverged(t testing.TB, a, b *peer.Node, p *peerhttp.Peer) {
	t.Helper()
	for _, n := range []*peer.Node{a, b} {
		for q, want := range map[string]int{
			"SELECT COUNT(*) FROM lists":                                    32,
			"SELECT COUNT(*) FROM lists WHERE name LIKE 'renamed list %'":   30,
			"SELECT COUNT(*) FROM todos":                                    120,
			"SELECT COUNT(*) FROM todos t JOIN lists l ON l.id = t.list_id": 120,
			"SELECT COUNT(*) FROM todos t JOIN lists l ON l.id = t.list_id WHERE l.name = 'renamed list 7' AND t.title LIKE '7.%'": 4,
			"SELECT COUNT(*) FROM lists WHERE name IN ('x', 'y')":                                                                  2,
			"SELECT COUNT(*) FROM notes": 60,
		} {
			if got := count(t, n, q); got != want {
				t.Errorf("%s on %s: %d, want %d", q, n.ID(), got, want)
			}
		}
	}
	da, err := a.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Fatalf("digests differ: %s and %s", da, db)
	}
	rep, err := a.Sync(ctx, p)
	if err != nil {
		t.Fatalf("a sync after convergence: %v", err)
	}
	if rep.Pulled != 0 || rep.Pushed != 0 {
		t.Fatalf("a sync after convergence moved versions: %s", rep)
	}
}

// TestBacklogInParts: a backlog many times the receiving node's
// MaxBodyBytes (4 KiB) syncs, pushed in parts each within the limit the
// node announces, with rows that reference rows of later parts (todos
// before their lists in the feed), a swap of unique values and a delete
// cascading to children, on SQLite and PostgreSQL. The pull, the other
// direction, comes in pages each within the puller's Peer.MaxAnswer (16
// KiB, the backlog it pulls many times that). Before, every sync was
// refused with 413, for ever.
func TestBacklogInParts(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, maxPart := range []int64{0, 3000} {
			t.Run(fmt.Sprintf("%s/MaxPart=%d", kind, maxPart), func(t *testing.T) {
				t.Parallel()
				backlogInParts(t, kind, maxPart)
			})
		}
	}
}

// backlogInParts runs TestBacklogInParts on kind, with Peer.MaxPart
// maxPart (0: the parts are within the receiver's announced limit).
func backlogInParts(t *testing.T, kind string, maxPart int64) {
	const announced = 4 << 10
	limit := int64(announced)
	if maxPart > 0 {
		limit = maxPart
	}
	a := newPeerNode(t, kind)
	b := synctest.NewNode(t, kind, &peer.Config{MaxBatchBytes: 8 << 10})
	srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: meshSecret, MaxBodyBytes: announced}))
	t.Cleanup(srv.Close)
	tr := &partsTransport{}
	p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, MaxAnswer: 16 << 10, MaxPart: maxPart, Client: &http.Client{Transport: tr}}
	partsBacklog(t, a, b, p)
	tr.mu.Lock()
	tr.sizes = nil
	tr.mu.Unlock()
	rep, err := a.Sync(ctx, p)
	if err != nil {
		t.Fatalf("sync of a backlog over the limit: %v", err)
	}
	if rep.Pulled != 40 {
		t.Errorf("pulled %d versions, want b's 40 notes", rep.Pulled)
	}
	var sent int64
	for _, s := range tr.sizes {
		if s > limit {
			t.Errorf("a part of %d bytes, over the limit of %d", s, limit)
		}
		sent += s
	}
	if len(tr.sizes) < 10 || sent < 10*limit {
		t.Fatalf("%d apply requests of %d bytes in all: want a backlog many times the limit, in parts", len(tr.sizes), sent)
	}
	t.Logf("pushed %d versions in %d parts of %d bytes in all", rep.Pushed, len(tr.sizes), sent)
	checkConverged(t, a, b, p)
}

// TestBacklogPartsCut: a push in parts cut after its second part, by the
// connection failing or by the receiving node's server closing (a new
// handler serves it after, its staged parts gone), applies nothing: the
// receiver's rows and its cursor for the sender stay as they were. The
// next sync resumes the body after the parts the receiver holds (its
// hello says which) when the sender's body still starts with them, and
// sends it again from its first part when the receiver holds nothing
// (the server closed) or the body changed (a row of its first page was
// written since). It ends converged, with nothing lost and nothing
// applied twice (a further sync moves nothing).
func TestBacklogPartsCut(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			how  string
			from int64 // the first offset of the next sync
		}{{"connection", 2 * limit}, {"server", 0}, {"changed", 0}} {
			t.Run(kind+"/"+tc.how, func(t *testing.T) {
				t.Parallel()
				a := newPeerNode(t, kind)
				b := newPeerNode(t, kind)
				cfg := &peerhttp.Config{Secret: meshSecret, MaxBodyBytes: limit}
				srv := httptest.NewServer(peerhttp.NewHandler(b, cfg))
				t.Cleanup(srv.Close)
				p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a}
				partsBacklog(t, a, b, p)
				cursor, err := b.Cursor(ctx, a.ID())
				if err != nil {
					t.Fatal(err)
				}
				tr := &partsTransport{cutAfter: 2}
				if tc.how == "server" {
					tr.cut = srv.Close
				}
				cutPeer := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, Client: &http.Client{Transport: tr}}
				if _, err := a.Sync(ctx, cutPeer); !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("sync cut between parts: %v, want dbsync.ErrNetwork", err)
				}
				if len(tr.sizes) != 3 {
					t.Fatalf("%d apply requests, want 2 parts and the one cut", len(tr.sizes))
				}
				// b took nothing of a's backlog (a pulled b's notes
				// before its push).
				if count(t, b, "SELECT COUNT(*) FROM notes") != 40 || count(t, b, "SELECT COUNT(*) FROM todos") != 2 ||
					count(t, b, "SELECT COUNT(*) FROM lists WHERE name = 'x'") != 1 {
					t.Fatal("the parts before the cut were applied")
				}
				if c, err := b.Cursor(ctx, a.ID()); err != nil || c != cursor {
					t.Fatalf("b's cursor for a moved from %+v to %+v (%v)", cursor, c, err)
				}
				switch tc.how {
				case "server":
					srv = httptest.NewServer(peerhttp.NewHandler(b, cfg))
					t.Cleanup(srv.Close)
				case "changed":
					if _, err := a.DB().ExecContext(ctx, "UPDATE todos SET title = '0.0 changed' WHERE title LIKE '0.0 %'"); err != nil {
						t.Fatal(err)
					}
				}
				tr = &partsTransport{}
				p = &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, Client: &http.Client{Transport: tr}}
				if _, err := a.Sync(ctx, p); err != nil {
					t.Fatalf("sync after the cut: %v", err)
				}
				if len(tr.offsets) < 2 || tr.offsets[0] != tc.from {
					t.Fatalf("the sync after the cut sent parts at %v, want them from %d", tr.offsets, tc.from)
				}
				for i := 1; i < len(tr.offsets); i++ {
					if tr.offsets[i] != tr.offsets[i-1]+tr.sizes[i-1] {
						t.Fatalf("parts at %v of %v bytes: not one after the other", tr.offsets, tr.sizes)
					}
				}
				checkConverged(t, a, b, p)
			})
		}
	}
}

// TestApplyParts: POST /apply in parts, signed requests sent by hand. The
// hello announces MaxBodyBytes, and what the node holds of the requesting
// peer's body (upload, bytes, their SHA-256); nothing is applied before the last part,
// which applies the whole body; a part that does not follow the bytes
// received, or of a body not being received (dropped, or replaced by a
// later body of the peer), is refused with 409 push_incomplete, nothing
// applied; a malformed part query is a 400.
func TestApplyParts(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{MaxBodyBytes: 4096})
			hello := func() peerhttp.Hello {
				t.Helper()
				status, raw, _ := e.do(e.request(http.MethodGet, "hello", "", nil))
				var h peerhttp.Hello
				if status != http.StatusOK || json.Unmarshal(raw, &h) != nil || h.MaxBody != 4096 {
					t.Fatalf("hello: %d %s, want max_body 4096", status, raw)
				}
				return h
			}
			if h := hello(); h.Staged != nil {
				t.Fatalf("hello before any part: staged %+v", h.Staged)
			}
			var changes []peer.Change
			for i := range 3 {
				changes = append(changes, noteChange(t, e.node, e.from, fmt.Sprint(i), time.Now()))
			}
			body := applyBody(t, e.node, changes...)
			half := int64(len(body) / 2)
			send := func(upload uuid.UUID, offset int64, more bool, part []byte) (int, []byte, string) {
				q := url.Values{"upload": {upload.String()}, "offset": {fmt.Sprint(offset)}}
				if more {
					q.Set("more", "true")
				}
				return e.do(e.request(http.MethodPost, "apply", q.Encode(), part))
			}
			received := func(raw []byte, want int64) {
				t.Helper()
				var a peerhttp.ApplyAnswer
				if err := json.Unmarshal(raw, &a); err != nil || a.Received != want || a.Applied != 0 {
					t.Fatalf("answer %s, want %d bytes received and nothing applied", raw, want)
				}
			}
			before := e.state()
			first := uuid.New()
			status, raw, _ := send(first, 0, true, body[:half])
			if status != http.StatusOK {
				t.Fatalf("first part: %d %s", status, raw)
			}
			received(raw, half)
			if e.state() != before {
				t.Fatal("a first part was applied")
			}
			sum := sha256.Sum256(body[:half])
			if h := hello(); h.Staged == nil || *h.Staged != (peerhttp.Staged{Upload: first.String(), Received: half, SHA256: hex.EncodeToString(sum[:])}) {
				t.Fatalf("hello after a first part of %d bytes: staged %+v", half, h.Staged)
			}
			for _, tc := range []struct {
				name   string
				upload uuid.UUID
				offset int64
			}{
				{"a gap", first, half + 1},
				{"after the gap, the body dropped", first, half},
				{"another body", uuid.New(), half},
			} {
				if status, raw, code := send(tc.upload, tc.offset, false, body[half:]); status != http.StatusConflict || code != protocol.CodePushIncomplete {
					t.Fatalf("%s: %d %s, want 409 %s", tc.name, status, raw, protocol.CodePushIncomplete)
				}
				if e.state() != before {
					t.Fatalf("%s: applied", tc.name)
				}
			}
			// A body whose first part a later body's replaces.
			status, raw, _ = send(first, 0, true, body[:half])
			if status != http.StatusOK {
				t.Fatalf("first part again: %d %s", status, raw)
			}
			second := uuid.New()
			status, raw, _ = send(second, 0, true, body[:10])
			if status != http.StatusOK {
				t.Fatalf("a later body's first part: %d %s", status, raw)
			}
			received(raw, 10)
			if status, raw, code := send(first, half, false, body[half:]); status != http.StatusConflict || code != protocol.CodePushIncomplete {
				t.Fatalf("the replaced body's last part: %d %s, want 409 %s", status, raw, protocol.CodePushIncomplete)
			}
			status, raw, _ = send(second, 10, true, body[10:half])
			if status != http.StatusOK {
				t.Fatalf("second part: %d %s", status, raw)
			}
			received(raw, half)
			if e.state() != before {
				t.Fatal("parts before the last were applied")
			}
			status, raw, _ = send(second, half, false, body[half:])
			var a peerhttp.ApplyAnswer
			if status != http.StatusOK || json.Unmarshal(raw, &a) != nil || a.Applied != 3 {
				t.Fatalf("last part: %d %s, want 3 versions applied", status, raw)
			}
			if got := e.state(); got.cursor != 3 || peerCount(t, e.node, "notes") != 3 {
				t.Fatalf("after the last part: cursor %d, %d notes; want 3 and 3", got.cursor, peerCount(t, e.node, "notes"))
			}
			if h := hello(); h.Staged != nil {
				t.Fatalf("hello after the last part: staged %+v", h.Staged)
			}
			for _, q := range []string{"upload=x&offset=0", "upload=" + strings.ToUpper(second.String()) + "&offset=0",
				"upload=" + second.String() + "&offset=-1", "upload=" + second.String(), "upload=" + second.String() + "&offset=0&more=yes",
				"offset=0", "more=true"} {
				if status, raw, code := e.do(e.request(http.MethodPost, "apply", q, body)); status != http.StatusBadRequest || code != protocol.CodeBadRequest {
					t.Errorf("%s: %d %s, want 400 %s", q, status, raw, protocol.CodeBadRequest)
				}
			}
		})
	}
}

// TestStagedBytesBound: the bytes a node stages from parts are bounded
// (Config.MaxStagedBytes), summed over the peers. A peer sending parts
// with more=true for ever is refused 413 too_large once its body would
// pass the bound, the body dropped; a part that fits the bound alone but
// not with another peer's body is refused 503 busy, the body kept for a
// resume; a body applied gives its bytes back. Before, a peer (any holder
// of the mesh secret, under any peer id) could stage without end.
func TestStagedBytesBound(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, &peerhttp.Config{MaxBodyBytes: 4096, MaxStagedBytes: 10000})
			other := *e
			other.from = uuid.New()
			send := func(e *peerEnv, upload uuid.UUID, offset int64, more bool, part []byte) (int, []byte, string) {
				q := url.Values{"upload": {upload.String()}, "offset": {fmt.Sprint(offset)}}
				if more {
					q.Set("more", "true")
				}
				return e.do(e.request(http.MethodPost, "apply", q.Encode(), part))
			}
			staged := func(e *peerEnv) *peerhttp.Staged {
				t.Helper()
				status, raw, _ := e.do(e.request(http.MethodGet, "hello", "", nil))
				var h peerhttp.Hello
				if status != http.StatusOK || json.Unmarshal(raw, &h) != nil {
					t.Fatalf("hello: %d %s", status, raw)
				}
				return h.Staged
			}
			chunk := []byte(strings.Repeat("x", 4000))
			endless := uuid.New()
			var off int64
			for i := 0; ; i++ {
				status, raw, code := send(e, endless, off, true, chunk)
				if status == http.StatusOK {
					if off += int64(len(chunk)); off > 10000 || i > 10 {
						t.Fatalf("parts of an endless body staged %d bytes, past MaxStagedBytes 10000", off)
					}
					continue
				}
				if status != http.StatusRequestEntityTooLarge || code != protocol.CodeTooLarge || !strings.Contains(string(raw), "MaxStagedBytes") {
					t.Fatalf("a part past MaxStagedBytes: %d %s, want 413 %s naming the bound", status, raw, protocol.CodeTooLarge)
				}
				break
			}
			if off != 8000 {
				t.Fatalf("%d bytes staged before the refusal, want 8000", off)
			}
			if s := staged(e); s != nil {
				t.Fatalf("a body past MaxStagedBytes was kept: %+v", s)
			}
			// The bound is shared: the bytes it gave back are there for
			// another peer, and one peer's body makes another wait.
			kept := uuid.New()
			if status, raw, _ := send(e, kept, 0, true, chunk); status != http.StatusOK {
				t.Fatalf("a first part after the dropped body: %d %s", status, raw)
			}
			if status, raw, _ := send(e, kept, 4000, true, chunk); status != http.StatusOK {
				t.Fatalf("a second part: %d %s", status, raw)
			}
			second := uuid.New()
			if status, raw, code := send(&other, second, 0, true, chunk); status != http.StatusServiceUnavailable || code != protocol.CodeBusy {
				t.Fatalf("another peer's part past the bytes left: %d %s, want 503 %s", status, raw, protocol.CodeBusy)
			}
			if s := staged(e); s == nil || s.Received != 8000 {
				t.Fatalf("after another peer's refused part, the first peer's body: %+v, want 8000 bytes kept", s)
			}
			// A part taking the body itself past the bound drops it, and
			// its bytes go to the other peer.
			if status, raw, code := send(e, kept, 8000, true, chunk[:2001]); status != http.StatusRequestEntityTooLarge || code != protocol.CodeTooLarge {
				t.Fatalf("a part taking the body to 10001 bytes: %d %s, want 413", status, raw)
			}
			if status, raw, _ := send(&other, second, 0, true, chunk); status != http.StatusOK {
				t.Fatalf("another peer's part once the first body was dropped: %d %s", status, raw)
			}
		})
	}
}

// TestTinyPartLimit: a node whose hello announces a max_body of a few
// bytes (misconfigured, or hostile) is not sent a body a request per few
// bytes: the apply fails at once with dbsync.ErrBadResponse naming the
// announced limit, no POST /apply sent; so does a Peer.MaxPart below
// peerhttp.MinPartBytes, with an error naming it. A limit at
// MinPartBytes still syncs. Before, the backlog (20 KiB) was sent a
// request per 100 bytes, or per byte, or per 10 bytes of MaxPart.
func TestTinyPartLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		announced int64
		maxPart   int64
		want      string
	}{
		{"max_body 1", 1, 0, "max_body 1"},
		{"max_body 100", 100, 0, "max_body 100"},
		{"MaxPart 10", 1 << 20, 10, "Peer.MaxPart is 10"},
		{"max_body at the floor", peerhttp.MinPartBytes, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kind := dbtest.KindSQLite
			a := newPeerNode(t, kind)
			b := newPeerNode(t, kind)
			srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: meshSecret, MaxBodyBytes: tc.announced}))
			t.Cleanup(srv.Close)
			tr := &partsTransport{}
			p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, MaxPart: tc.maxPart, Client: &http.Client{Transport: tr}}
			synctest.InsertNotes(t, a.DB(), 20, 1<<10)
			_, err := a.Sync(ctx, p)
			tr.mu.Lock()
			posts := len(tr.sizes)
			tr.mu.Unlock()
			if tc.want == "" {
				if err != nil || count(t, b, "SELECT COUNT(*) FROM notes") != 20 {
					t.Fatalf("sync in parts of %d bytes: %v", tc.announced, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "MinPartBytes") {
				t.Fatalf("sync with %s: %v, want an error naming %q and peerhttp.MinPartBytes", tc.name, err, tc.want)
			}
			if tc.maxPart == 0 && !errors.Is(err, dbsync.ErrBadResponse) {
				t.Fatalf("sync to a node announcing max_body %d: %v, want dbsync.ErrBadResponse", tc.announced, err)
			}
			if posts != 0 {
				t.Fatalf("sync with %s sent %d POST /apply, want none", tc.name, posts)
			}
			if got := count(t, b, "SELECT COUNT(*) FROM notes"); got != 0 {
				t.Fatalf("%d notes applied", got)
			}
		})
	}
}
