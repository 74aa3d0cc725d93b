package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// sendPush sends p as n over loopback HTTP, in one request or in chunks
// of one operation and their commit, and returns the answer's status,
// body and error code.
func sendPush(t *testing.T, f *fixture, n node, p *push, chunked bool) (int, []byte, string) {
	t.Helper()
	if !chunked {
		body, err := json.Marshal(&p.req)
		if err != nil {
			t.Fatal(err)
		}
		return httpCall(t, f.Server, n, http.MethodPost, "push", "", body)
	}
	bodies := chunksOf(t, &p.req, 1)
	for _, b := range bodies {
		if st, raw, _ := httpCall(t, f.Server, n, http.MethodPost, "push-chunk", "", b); st != http.StatusOK {
			t.Fatalf("stage a chunk: %d %s", st, raw)
		}
	}
	commit, err := json.Marshal(commitOf(&p.req, bodies))
	if err != nil {
		t.Fatal(err)
	}
	return httpCall(t, f.Server, n, http.MethodPost, "push-commit", "", commit)
}

// folder adds an operation on the case_folders row code (a text key
// whose collation ignores case) to p.
func folder(p *push, cmd models.Command, code, name string) *push {
	if cmd == models.Delete {
		return p.op("case_folders", code, cmd, nil)
	}
	return p.op("case_folders", code, cmd, rowJSON(map[string]any{"code": code, "owner_id": "ann", "name": name}))
}

// TestRebaseCaseInsensitiveKeys: under a text key's collation that
// ignores case, "ABC" and "abc" name one row. A push based on an older
// version that writes or deletes the row under one spelling, where
// another node changed it under another after the push's base, is
// refused pull_needed, over HTTP, whole and chunked, nothing written, as
// a push of the same spelling is; a push of a row no one changed since
// is rebased. Before, the rebase check compared the log's keys byte for
// byte: the push was rebased and overwrote the other node's change. (A
// write under another spelling than the server's is refused on its own,
// and a delete under another is logged under the server's spelling,
// TestRespelledKeyRefused: the spellings compared here are those of
// cid's push against the log's; versions of earlier releases may log
// the deletes' own.)
func TestRebaseCaseInsensitiveKeys(t *testing.T) {
	t.Parallel()
	type change struct {
		cmd       models.Command
		code      string
		wantClash bool
	}
	cases := []struct {
		name  string
		other change // the other node's change after the base
		mine  change // the push based on the version before it
	}{
		{name: "same spelling", other: change{cmd: models.Update, code: "abc"}, mine: change{cmd: models.Update, code: "abc", wantClash: true}},
		{name: "updated abc, update ABC", other: change{cmd: models.Update, code: "abc"}, mine: change{cmd: models.Update, code: "ABC", wantClash: true}},
		{name: "deleted ABC, update abc", other: change{cmd: models.Delete, code: "ABC"}, mine: change{cmd: models.Update, code: "abc", wantClash: true}},
		{name: "deleted aBc, delete AbC", other: change{cmd: models.Delete, code: "aBc"}, mine: change{cmd: models.Delete, code: "AbC", wantClash: true}},
		{name: "deleted Abc, update ABC", other: change{cmd: models.Delete, code: "Abc"}, mine: change{cmd: models.Update, code: "ABC", wantClash: true}},
		{name: "updated abc, delete ABC", other: change{cmd: models.Update, code: "abc"}, mine: change{cmd: models.Delete, code: "ABC", wantClash: true}},
		{name: "updated abc, insert ABC", other: change{cmd: models.Update, code: "abc"}, mine: change{cmd: models.Insert, code: "ABC", wantClash: true}},
		// Another row: rebased.
		{name: "updated xyz, delete ABC", other: change{cmd: models.Update, code: "xyz"}, mine: change{cmd: models.Delete, code: "ABC"}},
		{name: "updated abcd, delete ABC", other: change{cmd: models.Update, code: "abcd"}, mine: change{cmd: models.Delete, code: "ABC"}},
	}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/chunked=%v/%s", kind, chunked, c.name), func(t *testing.T) {
					t.Parallel()
					f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser}, createCaseFolders,
						(*caseFolder)(nil), (*caseDoc)(nil))
					ann, bob, cid := f.registerAs("ann"), f.registerAs("ann"), f.registerAs("ann")
					seed := newPush(nil)
					for _, code := range []string{"abc", "xyz", "abcd"} {
						folder(seed, models.Insert, code, "seeded")
					}
					if err := f.pushFn(ann, false)(seed); err != nil {
						t.Fatal(err)
					}
					base := f.latest()
					if err := f.pushFn(bob, false)(folder(newPush(ptr(base)), c.other.cmd, c.other.code, "bob's")); err != nil {
						t.Fatalf("bob's %s of %s: %v", c.other.cmd, c.other.code, err)
					}
					before := f.state()
					status, raw, code := sendPush(t, f, cid, folder(newPush(ptr(base)), c.mine.cmd, c.mine.code, "cid's"), chunked)
					if !c.mine.wantClash {
						if status != http.StatusOK {
							t.Fatalf("cid's %s of %s: %d %s, want it rebased", c.mine.cmd, c.mine.code, status, raw)
						}
						return
					}
					if status != http.StatusConflict || code != protocol.CodePullNeeded || !strings.Contains(string(raw), "changed since: case_folders ") {
						t.Fatalf("cid's %s of %s after bob's %s of %s: %d %s, want 409 pull_needed naming the row",
							c.mine.cmd, c.mine.code, c.other.cmd, c.other.code, status, raw)
					}
					f.mustUnchanged(before, "the refused push")
				})
			}
		}
	}
}
