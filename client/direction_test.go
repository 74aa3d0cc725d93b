package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// tagV1 is a table release 1 and 2 both push.
type tagV1 struct {
	bun.BaseModel `bun:"table:tags"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Text string `bun:"text,notnull"`
}

func createTagsV1(ctx context.Context, db bun.IDB) error {
	if err := createV1(ctx, db); err != nil {
		return err
	}
	_, err := db.NewCreateTable().Model((*tagV1)(nil)).IfNotExists().Exec(ctx)
	return err
}

// TestPullOnlyAfterUpgradeDropsPending: release 2 of an application makes
// a table pull-only (reference data the server owns from then on). A
// node with unpushed changes to it, made under release 1, upgrades: its
// release no longer pushes the table, so those changes are given up
// (like a dropped table's), the rows taking the server's values, and the
// node's other changes are pushed; its syncs are not refused for ever.
// With lost, the node's last push under release 1, carrying those
// changes, was applied but its answer lost: the upgraded node settles it.
// With cut, that push never reached the server.
func TestPullOnlyAfterUpgradeDropsPending(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct{ lost, cut bool }{{}, {lost: true}, {cut: true}} {
			t.Run(fmt.Sprintf("%s/lost=%v/cut=%v", kind, tc.lost, tc.cut), func(t *testing.T) {
				t.Parallel()
				pullOnlyAfterUpgrade(t, kind, tc.lost, tc.cut)
			})
		}
	}
}

func pullOnlyAfterUpgrade(t *testing.T, kind string, lost, cut bool) {
	ctx := context.Background()
	serverDB := dbtest.Open(t, kind)
	models1 := []any{(*projectV1)(nil), (*tagV1)(nil)}
	srv1 := synctest.NewServerWith(t, serverDB, createTagsV1, models1, nil)
	dbA := dbtest.Open(t, kind)
	var lose, drop atomic.Bool
	hc := &http.Client{Transport: synctest.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/push") && drop.CompareAndSwap(true, false) {
			return nil, errors.New("connection refused")
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/push") && lose.CompareAndSwap(true, false) {
			resp.Body.Close()
			return nil, errors.New("connection cut")
		}
		return resp, err
	})}
	a := synctest.NewClientWith(t, srv1, "a", dbA, createTagsV1, models1, &client.Config{HTTPClient: hc})
	execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('one'), ('two')")
	syncOK(t, a.Client)
	// Offline, under release 1: an update, a delete, an insert,
	// and a change to a table release 2 still pushes.
	execSQL(t, dbA, "UPDATE projects SET name = 'one, renamed by a' WHERE id = 1")
	execSQL(t, dbA, "DELETE FROM projects WHERE id = 2")
	execSQL(t, dbA, "INSERT INTO projects (name) VALUES ('three')")
	execSQL(t, dbA, "INSERT INTO tags (text) VALUES ('kept')")
	wantProjects := []string{`{"id":1,"name":"one"}`, `{"id":2,"name":"two"}`}
	if lost {
		lose.Store(true)
		if _, err := a.Client.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
			t.Fatalf("a push whose answer is lost: %v", err)
		}
		wantProjects = []string{`{"id":1,"name":"one, renamed by a"}`, `{"id":3,"name":"three"}`}
	}
	if cut {
		drop.Store(true)
		if _, err := a.Client.Sync(ctx); !errors.Is(err, dbsync.ErrNetwork) {
			t.Fatalf("a push cut on its way: %v", err)
		}
	}

	models2 := []any{dbsync.PullOnly((*projectV1)(nil)), (*tagV1)(nil)}
	srv2 := synctest.NewServerWith(t, serverDB, noSchema, models2, nil)
	newA := restart(t, srv2, dbA, 0, nil, models2...)
	if res := syncOK(t, newA); !lost && !cut && (len(res.Pushes) != 1 || res.Pushes[0].Operations != 1) {
		t.Fatalf("the upgraded node's sync must push its change to tags alone: %v", res)
	}
	if res := syncOK(t, newA); res.Changed() {
		t.Fatalf("a second sync changed something: %v", res)
	}
	want := synctest.Dump(t, serverDB, srv2.Reg)
	if strings.Join(want["projects"], " ") != strings.Join(wantProjects, " ") || len(want["tags"]) != 1 {
		t.Fatalf("server: %v", want)
	}
	if d := synctest.Diff(want, synctest.Dump(t, dbA, srv2.Reg)); d != "" {
		t.Fatalf("node differs from the server:\n%s", d)
	}
	if p, err := newA.Pending(ctx); err != nil || len(p) != 0 {
		t.Fatalf("pending after the sync: %v, %v", p, err)
	}
}
