package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// chunksOf splits a push request into chunk bodies of at most per
// operations, each with the rows of its inserts and updates (the push
// helper adds rows in the order of the operations).
func chunksOf(t testing.TB, req *protocol.PushRequest, per int) [][]byte {
	t.Helper()
	next := map[string]int{}
	var out [][]byte
	for seq := 0; seq*per < len(req.Operations); seq++ {
		c := &protocol.PushChunk{PushID: req.PushID, Seq: seq, Payload: protocol.Payload{}}
		for _, op := range req.Operations[seq*per : min((seq+1)*per, len(req.Operations))] {
			c.Operations = append(c.Operations, op)
			if op.Command != models.Delete {
				c.Payload[op.Table] = append(c.Payload[op.Table], req.Payload[op.Table][next[op.Table]])
				next[op.Table]++
			}
		}
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// commitOf is the commit of a push sent as bodies.
func commitOf(req *protocol.PushRequest, bodies [][]byte) *protocol.PushCommit {
	ds := make([]string, len(bodies))
	for i, b := range bodies {
		ds[i] = protocol.ChunkDigest(b)
	}
	return &protocol.PushCommit{PushID: req.PushID, LatestVersionID: req.LatestVersionID, Chunks: len(bodies), Digest: protocol.CommitDigest(ds)}
}

// httpCall sends a signed request over loopback HTTP; it returns the
// status, the body and, for an error, its code.
func httpCall(t testing.TB, s *synctest.Server, n node, method, endpoint, query string, body []byte) (int, []byte, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(signedRequest(t, s, n, method, endpoint, query, body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var eb protocol.ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &eb); err != nil {
			t.Fatalf("error body %q: %v", raw, err)
		}
	}
	return resp.StatusCode, raw, eb.Error.Code
}

func (f *fixture) stagedChunks() int {
	f.t.Helper()
	n, err := f.DB.NewSelect().Table("sync_push_chunks").Count(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return int(n)
}

// logOf lists the server's operations log.
func (f *fixture) logOf() []string {
	f.t.Helper()
	var ops []models.Operation
	if err := f.DB.NewSelect().Model(&ops).Order("order").Scan(ctx); err != nil {
		f.t.Fatal(err)
	}
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = op.RowID + " " + string(op.Command) + " " + string(rune('0'+*op.VersionID))
	}
	return out
}

// bigPush is a push of lists and their todos, with an update and a
// delete of rows pushed before.
func bigPush(base *int64) *push {
	p := newPush(base)
	for i := int64(10); i < 30; i++ {
		p.list(models.Insert, i, "list "+string(rune('a'+i-10)))
		p.todo(models.Insert, i, i, "todo")
	}
	return p.list(models.Update, 1, "renamed").del("todos", 1)
}

// TestChunkedPushEqualsPush: a push sent in chunks over HTTP gives the
// same rows, log, versions and answers as the same push in one request,
// and its staged chunks are gone after the commit.
func TestChunkedPushEqualsPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			one, chunked := newFixture(t, kind, nil), newFixture(t, kind, nil)
			a1, a2 := one.register(), chunked.register()
			first := newPush(nil).list(models.Insert, 1, "home").todo(models.Insert, 1, 1, "milk")
			for _, f := range []struct {
				f *fixture
				n node
			}{{one, a1}, {chunked, a2}} {
				if _, err := f.f.Srv.Push(ctx, f.n.id, first.Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			p := bigPush(ptr(1))
			want, err := one.Srv.Push(ctx, a1.id, p.Ptr())
			if err != nil {
				t.Fatal(err)
			}
			bodies := chunksOf(t, p.Ptr(), 7)
			if len(bodies) != 6 {
				t.Fatalf("%d chunks, want 6", len(bodies))
			}
			for i, b := range bodies {
				status, raw, _ := httpCall(t, chunked.Server, a2, http.MethodPost, "push-chunk", "", b)
				var r protocol.PushChunkResponse
				if status != http.StatusOK || json.Unmarshal(raw, &r) != nil || r.Seq != i || r.Digest != protocol.ChunkDigest(b) {
					t.Fatalf("chunk %d: %d %s", i, status, raw)
				}
			}
			if n := chunked.stagedChunks(); n != 6 {
				t.Fatalf("%d chunks staged, want 6", n)
			}
			commit, _ := json.Marshal(commitOf(p.Ptr(), bodies))
			status, raw, _ := httpCall(t, chunked.Server, a2, http.MethodPost, "push-commit", "", commit)
			var got protocol.PushResponse
			if status != http.StatusOK || json.Unmarshal(raw, &got) != nil || !sameAnswer(&got, want) {
				t.Fatalf("commit: %d %s, want %+v", status, raw, want)
			}
			if d := synctest.Diff(synctest.Dump(t, one.DB, one.Reg), synctest.Dump(t, chunked.DB, chunked.Reg)); d != "" {
				t.Fatalf("rows differ:\n%s", d)
			}
			// The same entries: their order inside a version differs (a
			// chunked commit logs a chunk at a time).
			if a, b := one.logOf(), chunked.logOf(); !slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))) {
				t.Fatalf("logs differ:\n%v\n%v", a, b)
			}
			if s1, s2 := one.state(), chunked.state(); s1.Versions != s2.Versions || s1.Pushes != s2.Pushes {
				t.Fatalf("sync state %+v vs %+v", s1, s2)
			}
			if n := chunked.stagedChunks(); n != 0 {
				t.Fatalf("%d chunks staged after the commit", n)
			}
		})
	}
}

// TestChunkedPushResume: after a cut the server tells which chunks it
// holds; a resent chunk replaces its copy; a commit whose answer was lost
// is applied once; chunks and status after it report the version.
func TestChunkedPushResume(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			p := bigPush(nil)
			p.req.Operations = p.req.Operations[:len(p.req.Operations)-2] // nothing to update or delete yet
			bodies := chunksOf(t, p.Ptr(), 10)
			for _, b := range bodies[:2] {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, b); err != nil {
					t.Fatal(err)
				}
			}
			// Cut. The node asks what the server holds, over HTTP.
			status, raw, _ := httpCall(t, f.Server, a, http.MethodGet, "push-status", url.Values{"push_id": {p.req.PushID}}.Encode(), nil)
			var st protocol.PushChunkStatus
			if status != http.StatusOK || json.Unmarshal(raw, &st) != nil || st.VersionID != nil {
				t.Fatalf("status: %d %s", status, raw)
			}
			want := []protocol.StagedChunk{{Seq: 0, Digest: protocol.ChunkDigest(bodies[0])}, {Seq: 1, Digest: protocol.ChunkDigest(bodies[1])}}
			if !slices.Equal(st.Chunks, want) {
				t.Fatalf("held %+v, want %+v", st.Chunks, want)
			}
			// A commit now is incomplete, and writes nothing.
			before := f.state()
			if _, err := f.Srv.CommitPush(ctx, a.id, commitOf(p.Ptr(), bodies)); !errors.Is(err, dbsync.ErrPushIncomplete) || errors.Is(err, dbsync.ErrPushRejected) {
				t.Fatalf("commit without chunk 2: %v, want ErrPushIncomplete", err)
			}
			f.mustUnchanged(before, "incomplete commit")
			// The rest, and chunk 1 again.
			for _, b := range append(bodies[2:], bodies[1]) {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, b); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.stagedChunks(); n != len(bodies) {
				t.Fatalf("%d staged, want %d", n, len(bodies))
			}
			resp, err := f.Srv.CommitPush(ctx, a.id, commitOf(p.Ptr(), bodies))
			if err != nil || resp.NewVersionID != 1 || resp.Duplicate {
				t.Fatalf("commit: %+v, %v", resp, err)
			}
			before = f.state()
			// The answer was lost: the commit again, and over HTTP.
			again, err := f.Srv.CommitPush(ctx, a.id, commitOf(p.Ptr(), bodies))
			if err != nil || !again.Duplicate || again.NewVersionID != 1 {
				t.Fatalf("commit again: %+v, %v", again, err)
			}
			commit, _ := json.Marshal(commitOf(p.Ptr(), bodies))
			status, raw, _ = httpCall(t, f.Server, a, http.MethodPost, "push-commit", "", commit)
			var pr protocol.PushResponse
			if status != http.StatusOK || json.Unmarshal(raw, &pr) != nil || !pr.Duplicate || pr.NewVersionID != 1 {
				t.Fatalf("HTTP commit again: %d %s", status, raw)
			}
			// A chunk resent after the commit is not staged.
			cr, err := f.Srv.StagePushChunk(ctx, a.id, bodies[0])
			if err != nil || cr.VersionID == nil || *cr.VersionID != 1 {
				t.Fatalf("chunk after commit: %+v, %v", cr, err)
			}
			st2, err := f.Srv.ChunkStatus(ctx, a.id, p.req.PushID)
			if err != nil || st2.VersionID == nil || *st2.VersionID != 1 || len(st2.Chunks) != 0 {
				t.Fatalf("status after commit: %+v, %v", st2, err)
			}
			f.mustUnchanged(before, "resent commit")
			if n := f.stagedChunks(); n != 0 {
				t.Fatalf("%d chunks staged after the commit", n)
			}
			// Another node can neither commit nor learn about a's push.
			b := f.register()
			if _, err := f.Srv.ChunkStatus(ctx, b.id, p.req.PushID); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("b's status of a's push: %v", err)
			}
			if _, err := f.Srv.CommitPush(ctx, b.id, commitOf(p.Ptr(), bodies)); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("b committing a's push: %v", err)
			}
		})
	}
}

// TestChunkedPushRefusals: a stale base is refused at commit with
// pull_needed and the staged chunks are deleted; a bad chunk is refused
// with 400 and nothing is staged; a mixed or altered chunk set cannot
// commit; a row in two chunks is refused at commit; an abandoned push's
// chunks are deleted and refused.
func TestChunkedPushRefusals(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, b.id, newPush(nil).list(models.Insert, 1, "home").Ptr()); err != nil {
				t.Fatal(err)
			}
			before := f.state()

			// Stale base: refused at commit, chunks dropped.
			stale := newPush(nil).list(models.Insert, 2, "work").list(models.Insert, 3, "gym")
			bodies := chunksOf(t, stale.Ptr(), 1)
			for _, body := range bodies {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
					t.Fatal(err)
				}
			}
			commit, _ := json.Marshal(commitOf(stale.Ptr(), bodies))
			status, raw, code := httpCall(t, f.Server, a, http.MethodPost, "push-commit", "", commit)
			if status != http.StatusConflict || code != protocol.CodePullNeeded {
				t.Fatalf("stale commit: %d %s", status, raw)
			}
			f.mustUnchanged(before, "stale commit")
			if n := f.stagedChunks(); n != 0 {
				t.Fatalf("%d chunks staged after pull_needed, want 0", n)
			}

			// Bad chunks: 400, nothing staged.
			good := newPush(ptr(1)).list(models.Insert, 2, "work").todo(models.Insert, 1, 2, "milk")
			okBodies := chunksOf(t, good.Ptr(), 1)
			bad := map[string][]byte{
				"no seq":         []byte(`{"push_id":"` + good.req.PushID + `","operations":[]}`),
				"negative seq":   []byte(`{"push_id":"` + good.req.PushID + `","seq":-1,"operations":[]}`),
				"push id":        []byte(`{"push_id":"x","seq":0,"operations":[]}`),
				"push id case":   []byte(`{"push_id":"` + strings.ToUpper(good.req.PushID) + `","seq":0,"operations":[]}`),
				"unknown table":  []byte(`{"push_id":"` + good.req.PushID + `","seq":0,"operations":[{"order":1,"table":"nope","row_id":"1","command":"d"}]}`),
				"row missing":    []byte(`{"push_id":"` + good.req.PushID + `","seq":0,"operations":[{"order":1,"table":"lists","row_id":"9","command":"i"}],"payload":{}}`),
				"row of nothing": []byte(`{"push_id":"` + good.req.PushID + `","seq":0,"operations":[],"payload":{"lists":[{"id":9,"name":"x"}]}}`),
				"not JSON":       []byte(`{"push_id":`),
			}
			for name, body := range bad {
				status, raw, _ := httpCall(t, f.Server, a, http.MethodPost, "push-chunk", "", body)
				if status != http.StatusBadRequest {
					t.Fatalf("%s: %d %s, want 400", name, status, raw)
				}
			}
			if n := f.stagedChunks(); n != 0 {
				t.Fatalf("%d chunks staged after bad chunks", n)
			}
			f.mustUnchanged(before, "bad chunks")

			// A set mixed from two attempts: chunk 1 replaced by other
			// content after the node computed its digest.
			for _, body := range okBodies {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
					t.Fatal(err)
				}
			}
			other := newPush(ptr(1)).list(models.Insert, 2, "work").todo(models.Insert, 1, 2, "eggs")
			other.req.PushID = good.req.PushID
			if _, err := f.Srv.StagePushChunk(ctx, a.id, chunksOf(t, other.Ptr(), 1)[1]); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.CommitPush(ctx, a.id, commitOf(good.Ptr(), okBodies)); !errors.Is(err, dbsync.ErrPushIncomplete) {
				t.Fatalf("commit of a mixed set: %v, want ErrPushIncomplete", err)
			}
			wrongCount := commitOf(good.Ptr(), okBodies)
			wrongCount.Chunks = 1
			if _, err := f.Srv.CommitPush(ctx, a.id, wrongCount); !errors.Is(err, dbsync.ErrPushIncomplete) {
				t.Fatalf("commit naming fewer chunks: %v, want ErrPushIncomplete", err)
			}
			f.mustUnchanged(before, "mixed chunks")
			// One row in two chunks: each chunk is fine, the push is not;
			// whether or not its table stages its keys (unique columns),
			// and whether or not one of the two is a delete.
			twice := map[string]*push{
				"list written twice":    newPush(ptr(1)).list(models.Insert, 2, "work").list(models.Update, 2, "work!"),
				"todo written twice":    newPush(ptr(1)).todo(models.Insert, 7, 1, "milk").todo(models.Update, 7, 1, "milk!"),
				"todo written, deleted": newPush(ptr(1)).todo(models.Insert, 7, 1, "milk").del("todos", 7),
				"todo deleted, written": newPush(ptr(1)).del("todos", 7).todo(models.Insert, 7, 1, "milk"),
				"list deleted twice":    newPush(ptr(1)).del("lists", 1).del("lists", 1),
			}
			for name, p := range twice {
				tb := chunksOf(t, p.Ptr(), 1)
				for _, body := range tb {
					if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := f.Srv.CommitPush(ctx, a.id, commitOf(p.Ptr(), tb)); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("%s, in two chunks: %v, want ErrBadRequest", name, err)
				}
				f.mustUnchanged(before, name)
			}

			// A new push id drops the node's other staged chunks; the
			// node's pull giving the push up drops its own.
			for _, body := range okBodies {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.stagedChunks(); n != len(okBodies) {
				t.Fatalf("%d staged, want %d (the other push's dropped)", n, len(okBodies))
			}
			mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(1), PushID: good.req.PushID})
			if n := f.stagedChunks(); n != 0 {
				t.Fatalf("%d chunks staged after the pull gave the push up", n)
			}
			before = f.state() // the pull recorded the push as given up
			if _, err := f.Srv.StagePushChunk(ctx, a.id, okBodies[0]); !errors.Is(err, dbsync.ErrPushAbandoned) {
				t.Fatalf("chunk of an abandoned push: %v", err)
			}
			if _, err := f.Srv.CommitPush(ctx, a.id, commitOf(good.Ptr(), okBodies)); !errors.Is(err, dbsync.ErrPushAbandoned) {
				t.Fatalf("commit of an abandoned push: %v", err)
			}
			f.mustUnchanged(before, "abandoned push")

			// Bounded staging: beyond MaxStagedBytes, 413, and the chunks
			// held stay.
			small := newFixture(t, kind, &server.Config{MaxStagedBytes: int64(len(okBodies[0]) + len(okBodies[1]) - 1)})
			c := small.register()
			if _, err := small.Srv.StagePushChunk(ctx, c.id, okBodies[0]); err != nil {
				t.Fatal(err)
			}
			status, raw, code = httpCall(t, small.Server, c, http.MethodPost, "push-chunk", "", okBodies[1])
			if status != http.StatusRequestEntityTooLarge || code != protocol.CodeTooLarge {
				t.Fatalf("chunk beyond MaxStagedBytes: %d %s", status, raw)
			}
			if n := small.stagedChunks(); n != 1 {
				t.Fatalf("%d staged, want 1", n)
			}
		})
	}
}

// commitChunked stages a push one operation per chunk and commits it.
func (f *fixture) commitChunked(n node, req *protocol.PushRequest) (*protocol.PushResponse, error) {
	f.t.Helper()
	return f.commitChunkedTo(f.Srv, n, req)
}

// commitChunkedTo is commitChunked to srv (the server, or a view of it).
func (f *fixture) commitChunkedTo(srv *server.Server, n node, req *protocol.PushRequest) (*protocol.PushResponse, error) {
	f.t.Helper()
	bodies := chunksOf(f.t, req, 1)
	for _, b := range bodies {
		if _, err := srv.StagePushChunk(ctx, n.id, b); err != nil {
			f.t.Fatal(err)
		}
	}
	return srv.CommitPush(ctx, n.id, commitOf(req, bodies))
}

func (f *fixture) stagedKeys() int {
	f.t.Helper()
	n, err := f.DB.NewSelect().Table("sync_push_keys").Count(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return int(n)
}

// TestChunkedCommitAcrossChunks: a push whose rows are each in their own
// chunk, so that every check spans chunks (unique values moved between
// rows, names freed by a delete, children before their parents, deletes
// of referenced rows, two rows with one new name), gives the same outcome
// as the same push in one request: the same rows, or the same refusal
// naming the same rows, with nothing written.
func TestChunkedCommitAcrossChunks(t *testing.T) {
	t.Parallel()
	base := func() *push {
		return newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work").list(models.Insert, 3, "gym").
			todo(models.Insert, 1, 1, "milk").todo(models.Insert, 2, 2, "mail")
	}
	cases := map[string]func(p *push) *push{
		"rotation": func(p *push) *push {
			return p.list(models.Update, 1, "gym").list(models.Update, 2, "home").list(models.Update, 3, "work")
		},
		"name freed later, child first": func(p *push) *push {
			return p.list(models.Insert, 4, "gym").todo(models.Insert, 3, 5, "new").del("lists", 3).list(models.Insert, 5, "new")
		},
		"children deleted or moved later": func(p *push) *push {
			return p.del("lists", 1).del("lists", 2).del("todos", 1).todo(models.Update, 2, 3, "mail")
		},
		"orphaned child": func(p *push) *push { return p.del("lists", 1).todo(models.Update, 2, 2, "mail!") },
		"missing parent": func(p *push) *push { return p.todo(models.Insert, 3, 99, "lost") },
		"one name twice": func(p *push) *push { return p.list(models.Insert, 4, "pool").list(models.Insert, 5, "pool") },
		"swap and taken name": func(p *push) *push {
			return p.list(models.Update, 1, "work").list(models.Update, 2, "home").list(models.Insert, 4, "gym")
		},
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			for name, build := range cases {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					acrossChunks(t, kind, name, base, build)
				})
			}
		})
	}
}

func acrossChunks(t *testing.T, kind, name string, base func() *push, build func(p *push) *push) {
	one, chunked := newFixture(t, kind, nil), newFixture(t, kind, nil)
	a1, a2 := one.register(), chunked.register()
	if _, err := one.Srv.Push(ctx, a1.id, base().Ptr()); err != nil {
		t.Fatal(err)
	}
	if _, err := chunked.commitChunked(a2, base().Ptr()); err != nil {
		t.Fatalf("%s: base: %v", name, err)
	}
	p := build(newPush(ptr(1)))
	before := chunked.state()
	want, werr := one.Srv.Push(ctx, a1.id, p.Ptr())
	got, gerr := chunked.commitChunked(a2, p.Ptr())
	var wuc, guc *dbsync.UniqueConstraintError
	switch {
	case werr == nil && gerr == nil:
		if !sameAnswer(got, want) {
			t.Fatalf("%s: answer %+v, want %+v", name, got, want)
		}
	case errors.As(werr, &wuc) && errors.As(gerr, &guc):
		if !slices.Equal(entryKeys(wuc), entryKeys(guc)) {
			t.Fatalf("%s: conflict names %v, want %v", name, entryKeys(guc), entryKeys(wuc))
		}
		chunked.mustUnchanged(before, name)
	case errors.Is(werr, dbsync.ErrPushRejected) && errors.Is(gerr, dbsync.ErrPushRejected):
		chunked.mustUnchanged(before, name)
	default:
		t.Fatalf("%s: chunked commit %v, one request %v", name, gerr, werr)
	}
	if d := synctest.Diff(synctest.Dump(t, one.DB, one.Reg), synctest.Dump(t, chunked.DB, chunked.Reg)); d != "" {
		t.Fatalf("%s: rows differ:\n%s", name, d)
	}
	if n, k := chunked.stagedChunks(), chunked.stagedKeys(); n != 0 || k != 0 {
		t.Fatalf("%s: %d chunks and %d keys staged after the commit", name, n, k)
	}
}

func entryKeys(uc *dbsync.UniqueConstraintError) []string {
	out := make([]string, len(uc.Entries))
	for i, e := range uc.Entries {
		out[i] = e.Table + " " + e.PK
	}
	slices.Sort(out)
	return out
}

// TestStagedChunksSwept: chunks staged longer ago than StagedChunkTTL, and
// their keys, are deleted when a push's first chunk arrives, and by Trim
// (with no chunked push coming, they stayed); younger ones stay.
func TestStagedChunksSwept(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, by := range []string{"chunk", "trim"} {
			t.Run(kind+"/"+by, func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				now := time.Now()
				clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
				f := newFixture(t, kind, &server.Config{StagedChunkTTL: time.Hour, Now: clock})
				a, b := f.register(), f.register()
				old := newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work")
				for _, body := range chunksOf(t, old.Ptr(), 1) {
					if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
						t.Fatal(err)
					}
				}
				mu.Lock()
				now = now.Add(2 * time.Hour)
				mu.Unlock()
				if by == "trim" {
					if _, err := f.Srv.Trim(ctx); err != nil {
						t.Fatal(err)
					}
					if n, k := f.stagedChunks(), f.stagedKeys(); n != 0 || k != 0 {
						t.Fatalf("%d chunks and %d keys staged after the trim, want none", n, k)
					}
					return
				}
				fresh := newPush(nil).list(models.Insert, 3, "gym")
				if _, err := f.Srv.StagePushChunk(ctx, b.id, chunksOf(t, fresh.Ptr(), 1)[0]); err != nil {
					t.Fatal(err)
				}
				if n, k := f.stagedChunks(), f.stagedKeys(); n != 1 || k != 1 {
					t.Fatalf("%d chunks and %d keys staged after the sweep, want the fresh push's 1 and 1", n, k)
				}
				if _, err := f.Srv.CommitPush(ctx, b.id, commitOf(fresh.Ptr(), chunksOf(t, fresh.Ptr(), 1))); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestConcurrentStaging: chunks of one node staged at once (PostgreSQL
// runs their transactions together) still keep MaxStagedBytes and one
// push id per node.
func TestConcurrentStaging(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			p := newPush(nil)
			for i := int64(1); i <= 16; i++ {
				p.list(models.Insert, i, "list number "+string(rune('a'+i)))
			}
			bodies := chunksOf(t, p.Ptr(), 1)
			limit := int64(3 * len(bodies[0]))
			f := newFixture(t, kind, &server.Config{MaxStagedBytes: limit})
			stageAll := func(node int64, bodies [][]byte) {
				var wg sync.WaitGroup
				for _, b := range bodies {
					wg.Go(func() {
						_, err := f.Srv.StagePushChunk(ctx, node, b)
						if err != nil && !errors.Is(err, dbsync.ErrTooLarge) && !errors.Is(err, dbsync.ErrBusy) {
							t.Errorf("stage: %v", err)
						}
					})
				}
				wg.Wait()
			}

			a := f.register()
			stageAll(a.id, bodies)
			var held int64
			if err := f.DB.NewRaw("SELECT COALESCE(SUM(size), 0) FROM sync_push_chunks WHERE node_id = ?", a.id).Scan(ctx, &held); err != nil {
				t.Fatal(err)
			}
			if held > limit || held == 0 {
				t.Errorf("staged %d bytes, want 1 to %d (MaxStagedBytes)", held, limit)
			}

			b := f.register()
			var others [][]byte
			for i := range 16 {
				q := newPush(nil).list(models.Insert, int64(100+i), "x")
				others = append(others, chunksOf(t, q.Ptr(), 1)[0])
			}
			stageAll(b.id, others)
			var ids int
			if err := f.DB.NewRaw("SELECT COUNT(DISTINCT push_id) FROM sync_push_chunks WHERE node_id = ?", b.id).Scan(ctx, &ids); err != nil {
				t.Fatal(err)
			}
			if ids != 1 {
				t.Errorf("%d push ids staged for one node, want 1", ids)
			}
		})
	}
}

// TestChunkedCommitMalformedDigest: a commit whose digest is not 64
// lowercase hex digits is a malformed request, 400 bad_request, like a
// commit without chunks: not 409 push_incomplete, which tells the node to
// send the missing chunks and commit again (the same commit, refused the
// same way for ever). The chunks stay staged; the right commit applies.
func TestChunkedCommitMalformedDigest(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			p := newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work")
			bodies := chunksOf(t, p.Ptr(), 1)
			for _, body := range bodies {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, body); err != nil {
					t.Fatal(err)
				}
			}
			before := f.state()
			good := commitOf(p.Ptr(), bodies)
			for name, digest := range map[string]string{
				"absent":    "",
				"uppercase": strings.ToUpper(good.Digest),
				"short":     good.Digest[:32],
				"not hex":   strings.Repeat("z", 64),
			} {
				c := *good
				c.Digest = digest
				body, _ := json.Marshal(&c)
				status, raw, code := httpCall(t, f.Server, a, http.MethodPost, "push-commit", "", body)
				if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
					t.Errorf("digest %s: %d %s, want 400 bad_request", name, status, raw)
				}
			}
			f.mustUnchanged(before, "malformed commits")
			if n := f.stagedChunks(); n != len(bodies) {
				t.Fatalf("%d chunks staged after malformed commits, want %d", n, len(bodies))
			}
			if _, err := f.Srv.CommitPush(ctx, a.id, good); err != nil {
				t.Fatalf("the right commit: %v", err)
			}
		})
	}
}

// sameAnswer reports whether two servers answered a push alike: the same
// answer, but for the new version's token, which each server draws (and
// both give).
func sameAnswer(a, b *protocol.PushResponse) bool {
	x, y := *a, *b
	if (x.NewVersionToken == "") != (y.NewVersionToken == "") {
		return false
	}
	x.NewVersionToken, y.NewVersionToken = "", ""
	return x == y
}

// TestSweepKeepsRestagedChunk: a chunk staged again while the sweep of
// expired chunks runs keeps the keys staged with it. The sweep listed
// the expired chunks, then deleted their keys and the chunks still
// expired: on PostgreSQL a chunk staged again in between (a node
// resuming its push a day later, its rows changed) kept its new body but
// lost its keys, the deletes of which the commit applies; the commit then
// logged the chunk's delete without deleting the row, on the server
// only, while every node pulling the version deleted it. Now the sweep
// deletes the keys of the chunks it deleted, and only those.
func TestSweepKeepsRestagedChunk(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			f := newFixture(t, kind, &server.Config{StagedChunkTTL: time.Hour, Now: clock})
			a := f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "home").Ptr()); err != nil {
				t.Fatal(err)
			}
			base := f.latest()
			p := newPush(&base).list(models.Insert, 3, "gym").op("lists", "1", models.Delete, nil)
			bodies := chunksOf(t, p.Ptr(), 1)
			for _, b := range bodies {
				if _, err := f.Srv.StagePushChunk(ctx, a.id, b); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			now = now.Add(2 * time.Hour)
			mu.Unlock()
			// The node stages its second chunk again as the sweep runs
			// (on SQLite it waits for the sweep's transaction).
			restaged := make(chan error, 1)
			var once sync.Once
			f.Srv.SetChunksSweeping(func() {
				once.Do(func() {
					go func() {
						_, err := f.Srv.StagePushChunk(ctx, a.id, bodies[1])
						restaged <- err
					}()
					select {
					case err := <-restaged:
						restaged <- err
					case <-time.After(2 * time.Second):
					}
				})
			})
			if _, err := f.Srv.Trim(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-restaged; err != nil {
				t.Fatal(err)
			}
			// The node resumes: chunk 0 was swept, chunk 1 is held.
			if _, err := f.Srv.StagePushChunk(ctx, a.id, bodies[0]); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.CommitPush(ctx, a.id, commitOf(p.Ptr(), bodies)); err != nil {
				t.Fatal(err)
			}
			var ids []int64
			if err := f.DB.NewRaw("SELECT id FROM lists ORDER BY id").Scan(ctx, &ids); err != nil {
				t.Fatal(err)
			}
			var logged []string
			if err := f.DB.NewRaw("SELECT row_id || command FROM sync_operations WHERE version_id = ? ORDER BY row_id", f.latest()).Scan(ctx, &logged); err != nil {
				t.Fatal(err)
			}
			if len(ids) != 1 || ids[0] != 3 {
				t.Fatalf("lists after the commit deleting 1 and inserting 3: %v, want [3] (its version logged %v)", ids, logged)
			}
		})
	}
}
