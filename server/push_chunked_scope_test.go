package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestChunkedPushScopesAcrossRestart: chunks uploaded to a server without
// scopes, which stages only some of their keys, then committed on a
// server with scopes over the same database (a restart with
// Config.Scopes in between): the commit checks every row of the push,
// and an out-of-scope write is refused (403 out_of_scope), nothing
// written.
func TestChunkedPushScopesAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			scoped := newScopedFixture(t, kind)
			noSchema := func(context.Context, bun.IDB) error { return nil }
			plain := synctest.NewServerWith(t, scoped.DB, noSchema, testmodels.Scoped(), &server.Config{AuthorizeRegister: synctest.BearerUser})
			ann, bob := scoped.registerAs("ann"), scoped.registerAs("bob")
			if _, err := scoped.Srv.Push(ctx, ann.id, &newPush(nil).project(models.Insert, 1, "ann", "private").req); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name string
				p    *push
				want []protocol.ScopeEntry
			}{
				{"insert into another's project", newPush(ptr(1)).task(models.Insert, 5, 1, "sneak"), []protocol.ScopeEntry{{Table: "tasks", PK: "5"}}},
				{"a good row and a bad one", newPush(ptr(1)).project(models.Insert, 2, "bob", "bob's").task(models.Insert, 6, 1, "sneak"),
					[]protocol.ScopeEntry{{Table: "tasks", PK: "6"}}},
			}
			for _, c := range cases {
				bodies := chunksOf(t, &c.p.req, 1)
				for _, b := range bodies {
					if _, err := plain.Srv.StagePushChunk(ctx, bob.id, b); err != nil {
						t.Fatalf("%s: stage on the server without scopes: %v", c.name, err)
					}
				}
				commit, err := json.Marshal(commitOf(&c.p.req, bodies))
				if err != nil {
					t.Fatal(err)
				}
				before := scoped.state()
				status, raw, code := httpCall(t, scoped.Server, bob, http.MethodPost, "push-commit", "", commit)
				if status != http.StatusForbidden || code != protocol.CodeOutOfScope {
					t.Fatalf("%s: commit on the server with scopes: %d %s, want 403 %s", c.name, status, raw, protocol.CodeOutOfScope)
				}
				var eb protocol.ErrorBody
				if err := json.Unmarshal(raw, &eb); err != nil {
					t.Fatal(err)
				}
				if !equalEntries(eb.Error.Rows, c.want) {
					t.Fatalf("%s: rows %+v, want %+v", c.name, eb.Error.Rows, c.want)
				}
				scoped.mustUnchanged(before, c.name)
			}
		})
	}
}

// TestChunkedPushScopesDroppedAcrossRestart: chunks staged by a server
// with scopes (every key staged), committed by a server without scopes
// over the same database (a restart dropping Config.Scopes in between), a
// push that deletes a parent and writes a child: the commit applies it,
// as it does when the server without scopes staged them. (It staged the
// children's keys again and was refused as a unique conflict naming no
// row.)
func TestChunkedPushScopesDroppedAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, stager := range []string{"plain", "scoped"} {
			t.Run(kind+"/"+stager, func(t *testing.T) {
				t.Parallel()
				scoped := newScopedFixture(t, kind)
				noSchema := func(context.Context, bun.IDB) error { return nil }
				plain := synctest.NewServerWith(t, scoped.DB, noSchema, testmodels.Scoped(), &server.Config{AuthorizeRegister: synctest.BearerUser})
				ann := scoped.registerAs("ann")
				first := newPush(nil).project(models.Insert, 1, "ann", "one").project(models.Insert, 2, "ann", "two")
				if _, err := scoped.Srv.Push(ctx, ann.id, &first.req); err != nil {
					t.Fatal(err)
				}
				stage := plain.Srv
				if stager == "scoped" {
					stage = scoped.Srv
				}
				p := newPush(ptr(1)).task(models.Insert, 5, 1, "t").del("projects", 2)
				bodies := chunksOf(t, &p.req, 1)
				for _, b := range bodies {
					if _, err := stage.StagePushChunk(ctx, ann.id, b); err != nil {
						t.Fatalf("stage: %v", err)
					}
				}
				commit, err := json.Marshal(commitOf(&p.req, bodies))
				if err != nil {
					t.Fatal(err)
				}
				status, raw, _ := httpCall(t, plain, ann, http.MethodPost, "push-commit", "", commit)
				if status != http.StatusOK {
					t.Fatalf("commit on the server without scopes (chunks staged by the %s server): %d %s", stager, status, raw)
				}
			})
		}
	}
}

// TestChunkedPushScopeRevokedBeforeCommit: chunks a member staged while
// the project was shared with it, committed after the owner revoked the
// membership, are checked against the scope at the commit: refused (403
// out_of_scope over HTTP), nothing written, the chunks dropped.
func TestChunkedPushScopeRevokedBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			ann, bob := f.registerAs("ann"), f.registerAs("bob")
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(nil).project(models.Insert, 1, "ann", "shared").
				member(models.Insert, 1, 1, "bob").task(models.Insert, 1, 1, "t").req); err != nil {
				t.Fatal(err)
			}
			req := &newPush(ptr(f.latest())).task(models.Update, 1, 1, "bob's edit").task(models.Insert, 2, 1, "bob's task").req
			bodies := chunksOf(t, req, 1)
			for _, b := range bodies {
				if _, err := f.Srv.StagePushChunk(ctx, bob.id, b); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Srv.Push(ctx, ann.id, &newPush(ptr(f.latest())).del("members", 1).req); err != nil {
				t.Fatal(err)
			}
			commit, err := json.Marshal(commitOf(req, bodies))
			if err != nil {
				t.Fatal(err)
			}
			before := f.state()
			status, raw, code := httpCall(t, f.Server, bob, http.MethodPost, "push-commit", "", commit)
			if status != http.StatusForbidden || code != protocol.CodeOutOfScope {
				t.Fatalf("commit after the revocation: %d %s, want 403 %s", status, raw, protocol.CodeOutOfScope)
			}
			f.mustUnchanged(before, "commit after the revocation")
			if n := f.stagedKeys(); n != 0 {
				t.Fatalf("%d keys left staged after the refusal", n)
			}
		})
	}
}
