package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestRespelledKeyRefused: under a text key's collation that ignores
// case (SQLite's NOCASE, a nondeterministic ICU collation on PostgreSQL),
// a push writing the row "abc" under another spelling of its key is
// refused 409 push_rejected naming the server's spelling, nothing
// written (not the push's other rows, nor a version, nor its log), on a
// server without scopes and for a global table of a server with scopes,
// over HTTP, whole and chunked (a chunk per operation: the refused write
// in the last one). Before, only a scoped table's rows were checked:
// the write went to "abc", which kept its key, and was logged under the
// push's spelling, which the other nodes' pulls found no row for; they
// kept the old values. A write of the server's own spelling, and a
// delete under another, are accepted; the version logs the delete under
// the server's spelling, which every node holds (before, under the
// push's: a node whose key column compares bytes found no row under it
// and kept its own).
func TestRespelledKeyRefused(t *testing.T) {
	t.Parallel()
	servers := []struct {
		name   string
		scopes server.Scopes
	}{
		{name: "unscoped"},
		{name: "global table of a scoped server", scopes: server.Scopes{"case_folders": server.GlobalWritable(), "case_docs": server.OwnedBy("owner_id")}},
	}
	cases := []struct {
		name string
		cmd  models.Command
		code string
		// want: the folders after the push, or "" for the refusal;
		// logged: the push's version's log.
		want, logged string
	}{
		{name: "update ABC", cmd: models.Update, code: "ABC"},
		{name: "insert aBc", cmd: models.Insert, code: "aBc"},
		{name: "update abc", cmd: models.Update, code: "abc", want: "abc:mine,xyz:new", logged: "i xyz,u abc"},
		{name: "delete ABC", cmd: models.Delete, code: "ABC", want: "xyz:new", logged: "d abc,i xyz"},
	}
	for _, kind := range dbtest.Kinds {
		for _, srv := range servers {
			for _, chunked := range []bool{false, true} {
				for _, c := range cases {
					t.Run(fmt.Sprintf("%s/%s/chunked=%v/%s", kind, srv.name, chunked, c.name), func(t *testing.T) {
						t.Parallel()
						f := newFixtureWithSchema(t, kind, &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: srv.scopes}, createCaseFolders,
							(*caseFolder)(nil), (*caseDoc)(nil))
						ann, bob := f.registerAs("ann"), f.registerAs("ann")
						if err := f.pushFn(ann, false)(folder(newPush(nil), models.Insert, "abc", "seeded")); err != nil {
							t.Fatal(err)
						}
						before := f.state()
						// A new row first: the refusal rolls it back too.
						p := folder(folder(newPush(ptr(f.latest())), models.Insert, "xyz", "new"), c.cmd, c.code, "mine")
						status, raw, code := sendPush(t, f, bob, p, chunked)
						if c.want == "" {
							var eb protocol.ErrorBody
							if err := json.Unmarshal(raw, &eb); err != nil {
								t.Fatalf("answer %d %s: %v", status, raw, err)
							}
							want := fmt.Sprintf("writes case_folders %q, which the server holds as %q", c.code, "abc")
							if status != http.StatusConflict || code != protocol.CodePushRejected || !strings.Contains(eb.Error.Message, want) {
								t.Fatalf("bob's %s: %d %s, want 409 push_rejected saying it %s", c.name, status, raw, want)
							}
							if strings.Contains(eb.Error.Message, "scopes") {
								t.Fatalf("bob's %s: the refusal %q speaks of scopes", c.name, eb.Error.Message)
							}
							f.mustUnchanged(before, "the refused push")
							return
						}
						if status != http.StatusOK {
							t.Fatalf("bob's %s: %d %s, want it accepted", c.name, status, raw)
						}
						var rows []caseFolder
						if err := f.DB.NewSelect().Model(&rows).Order("code").Scan(ctx); err != nil {
							t.Fatal(err)
						}
						var got []string
						for _, r := range rows {
							got = append(got, r.Code+":"+r.Name)
						}
						if strings.Join(got, ",") != c.want {
							t.Fatalf("bob's %s: folders %v, want %s", c.name, got, c.want)
						}
						var ops []models.Operation
						if err := f.DB.NewSelect().Model(&ops).Where("version_id = ?", f.latest()).Scan(ctx); err != nil {
							t.Fatal(err)
						}
						var logged []string
						for _, op := range ops {
							logged = append(logged, string(op.Command)+" "+op.RowID)
						}
						slices.Sort(logged)
						if strings.Join(logged, ",") != c.logged {
							t.Fatalf("bob's %s: the version logs %v, want %s", c.name, logged, c.logged)
						}
					})
				}
			}
		}
	}
}
