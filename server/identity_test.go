package server_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestVersionIdentity: each version gets a token of its own, which the
// push's answer, the pull's header and its versions lines give; a request
// naming a version by number and token is answered repair_needed, writing
// nothing, when the server holds that number with another token (it lost
// the version and numbered a new one as it), and as before without a
// token (an older node). A token too long is a malformed request. The
// log floor's token outlives a trim: a node holding the floor's version
// is checked too, one below it is answered reset_required as before.
func TestVersionIdentity(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			writer, reader := f.register(), f.register()
			tokens := map[int64]string{}
			for i := range int64(3) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				resp, err := f.Srv.Push(ctx, writer.id, newPush(base).list(models.Insert, i+1, fmt.Sprint("l", i+1)).Ptr())
				if err != nil {
					t.Fatal(err)
				}
				if resp.NewVersionToken == "" || slicesContain(tokens, resp.NewVersionToken) {
					t.Fatalf("version %d's token %q: want a new one (have %v)", resp.NewVersionID, resp.NewVersionToken, tokens)
				}
				tokens[resp.NewVersionID] = resp.NewVersionToken
			}
			msgs := mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(1), LatestVersionToken: tokens[1]})
			if msgs[0].LatestVersionToken != tokens[3] {
				t.Fatalf("pull header's token %q, want version 3's %q", msgs[0].LatestVersionToken, tokens[3])
			}
			for _, m := range msgs {
				for _, v := range m.Versions {
					if v.Token != tokens[v.VersionID] {
						t.Fatalf("version %d pulled with token %q, want %q", v.VersionID, v.Token, tokens[v.VersionID])
					}
				}
			}

			before := f.state()
			other := "ANOTHERVERSIONOFTHATNUMBER"
			refused := []struct {
				name string
				run  func() error
				want error
			}{
				{"pull", func() error {
					_, err := pull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2), LatestVersionToken: other})
					return err
				}, dbsync.ErrRepairNeeded},
				{"push", func() error {
					_, err := f.Srv.Push(ctx, reader.id, withToken(newPush(ptr(2)).list(models.Insert, 9, "x"), other))
					return err
				}, dbsync.ErrRepairNeeded},
				{"push at the latest", func() error {
					_, err := f.Srv.Push(ctx, reader.id, withToken(newPush(ptr(3)).list(models.Insert, 9, "x"), other))
					return err
				}, dbsync.ErrRepairNeeded},
				{"watch", func() error {
					_, err := f.Srv.Watch(ctx, reader.id, &protocol.WatchRequest{After: 3, AfterToken: other}, time.Minute)
					return err
				}, dbsync.ErrRepairNeeded},
				{"pull, token too long", func() error {
					_, err := pull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2), LatestVersionToken: strings.Repeat("A", 65)})
					return err
				}, dbsync.ErrBadRequest},
				{"push, token too long", func() error {
					_, err := f.Srv.Push(ctx, reader.id, withToken(newPush(ptr(2)).list(models.Insert, 9, "x"), strings.Repeat("A", 65)))
					return err
				}, dbsync.ErrBadRequest},
			}
			for _, r := range refused {
				if err := r.run(); !errors.Is(err, r.want) {
					t.Fatalf("%s naming version 2 or 3 with another token: %v, want %v", r.name, err, r.want)
				}
			}
			status, body, _ := httpPush(t, f.Server, reader, withToken(newPush(ptr(2)).list(models.Insert, 9, "x"), other))
			if status != http.StatusConflict || body.Error.Code != protocol.CodeRepairNeeded {
				t.Fatalf("HTTP push naming version 2 with another token: %d %+v, want 409 repair_needed", status, body)
			}
			f.mustUnchanged(before, "requests naming another version 2")

			// Its own token, or none (an older node): served.
			mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2), LatestVersionToken: tokens[2]})
			mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2)})
			if resp, err := f.Srv.Watch(ctx, reader.id, &protocol.WatchRequest{After: 2, AfterToken: tokens[2]}, time.Minute); err != nil || !resp.Changed {
				t.Fatalf("watch from version 2 named with its token: %+v %v, want changed", resp, err)
			}
			resp, err := f.Srv.Push(ctx, reader.id, withToken(newPush(ptr(2)).list(models.Insert, 9, "x"), tokens[2]))
			if err != nil || resp.NewVersionID != 4 {
				t.Fatalf("push based on version 2 named with its token: %+v %v", resp, err)
			}

			// The trim keeps the floor's token (both nodes hold version 2
			// or more: the reader named 2 last).
			res, err := f.Srv.Trim(ctx)
			if err != nil || res.Floor != 2 {
				t.Fatalf("trim: %+v %v, want floor 2", res, err)
			}
			if _, err := pull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2), LatestVersionToken: other}); !errors.Is(err, dbsync.ErrRepairNeeded) {
				t.Fatalf("pull naming the floor's version with another token: %v, want ErrRepairNeeded", err)
			}
			mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(2), LatestVersionToken: tokens[2]})
			if _, err := pull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(1), LatestVersionToken: other}); !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("pull below the floor: %v, want ErrResetRequired", err)
			}
		})
	}
}

// TestVersionIdentitySealed: a version sealed from direct writes gets a
// token too.
func TestVersionIdentitySealed(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, &server.Config{})
			n := f.register()
			if _, err := f.DB.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (1, 'direct')"); err != nil {
				t.Fatal(err)
			}
			msgs := mustPull(t, f.Srv, n.id, &protocol.PullRequest{})
			if *msgs[0].LatestVersionID != 1 || msgs[0].LatestVersionToken == "" {
				t.Fatalf("pull header %+v: want version 1 with a token", msgs[0])
			}
			if _, err := pull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(1), LatestVersionToken: "X" + msgs[0].LatestVersionToken}); !errors.Is(err, dbsync.ErrRepairNeeded) {
				t.Fatalf("pull naming the sealed version with another token: %v, want ErrRepairNeeded", err)
			}
		})
	}
}

func withToken(p *push, token string) *protocol.PushRequest {
	req := p.Ptr()
	req.LatestVersionToken = token
	return req
}

func slicesContain(m map[int64]string, v string) bool {
	for _, s := range m {
		if s == v {
			return true
		}
	}
	return false
}
