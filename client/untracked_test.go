package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

type untracked struct{ X int }

// TestUntrackedAndBadModels: a model or table the node does not track is
// dbsync.ErrUnknownTable for IsSynced, QueryAll and Query alike, and an
// IsSynced argument that is no row of a tracked model (a nil pointer, a
// slice) is dbsync.ErrBadRequest, not a panic.
func TestUntrackedAndBadModels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewTemplateLocalServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewTemplateClient(t, srv, "a", nil)
	if _, err := a.IsSynced(ctx, &untracked{}); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("IsSynced of an untracked model: %v, want dbsync.ErrUnknownTable", err)
	}
	if _, err := client.QueryAll[untracked](ctx, a.Client, nil); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("QueryAll of an untracked model: %v, want dbsync.ErrUnknownTable", err)
	}
	if _, err := a.Query(ctx, &protocol.QueryRequest{Table: "untracked"}); !errors.Is(err, dbsync.ErrUnknownTable) {
		t.Fatalf("Query of an untracked table: %v, want dbsync.ErrUnknownTable", err)
	}
	for _, m := range []any{nil, (*testmodels.List)(nil), []*testmodels.List{{}}, new(*testmodels.List)} {
		ok, err := a.IsSynced(ctx, m)
		if ok || !errors.Is(err, dbsync.ErrBadRequest) {
			t.Fatalf("IsSynced(%#v): %v, %v; want dbsync.ErrBadRequest", m, ok, err)
		}
	}
	if ok, err := a.IsSynced(ctx, testmodels.List{ID: 1}); err != nil || !ok {
		t.Fatalf("IsSynced of a struct value: %v, %v", ok, err)
	}
}
