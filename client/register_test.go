package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestRegisterExtraDataNotJSON: extra data that is not JSON is refused
// with dbsync.ErrBadRequest before anything is sent; the node stays the
// one registered.
func TestRegisterExtraDataNotJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
	tr := &transport{}
	c := synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client()})
	id, err := c.NodeID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := len(tr.requests(""))
	for _, extra := range []json.RawMessage{json.RawMessage(`{"device":`), json.RawMessage(`device`), json.RawMessage{}} {
		_, err := c.RegisterWith(ctx, &client.RegisterOptions{ExtraData: extra})
		if !errors.Is(err, dbsync.ErrBadRequest) {
			t.Fatalf("extra data %q: %v, want dbsync.ErrBadRequest", extra, err)
		}
		if _, err := c.Register(ctx, extra); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Fatalf("Register with extra data %q: %v, want dbsync.ErrBadRequest", extra, err)
		}
	}
	if n := len(tr.requests("")); n != sent {
		t.Fatalf("%d requests sent", n-sent)
	}
	if now, err := c.NodeID(ctx); err != nil || now != id {
		t.Fatalf("node %d (%v), want %d", now, err, id)
	}
}
