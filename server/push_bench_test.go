package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// BenchmarkPush applies pushes of 10,000 inserts (100 lists, 9,900 todos)
// with server.Push directly, on each database.
func BenchmarkPush(b *testing.B) {
	for _, kind := range dbtest.Kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			srv := synctest.NewServer(b, kind, nil)
			resp, err := srv.Srv.Register(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			node := resp.Node.NodeID
			var version int64
			base := int64(0)
			for b.Loop() {
				req := &protocol.PushRequest{PushID: uuid.NewString(), Payload: protocol.Payload{}}
				if version > 0 {
					req.LatestVersionID = &version
				}
				order := int64(0)
				for i := range 100 {
					id := base + int64(i) + 1
					order++
					req.Operations = append(req.Operations, protocol.Operation{Order: order, Table: "lists", RowID: fmt.Sprint(id), Command: models.Insert})
					req.Payload["lists"] = append(req.Payload["lists"], json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"list %d"}`, id, id)))
				}
				for i := range 9900 {
					id := base*99 + int64(i) + 1
					order++
					req.Operations = append(req.Operations, protocol.Operation{Order: order, Table: "todos", RowID: fmt.Sprint(id), Command: models.Insert})
					req.Payload["todos"] = append(req.Payload["todos"], json.RawMessage(fmt.Sprintf(`{"id":%d,"list_id":%d,"title":"todo %d","done":false}`, id, base+int64(i%100)+1, id)))
				}
				res, err := srv.Srv.Push(ctx, node, req)
				if err != nil {
					b.Fatal(err)
				}
				version = res.NewVersionID
				base += 100
			}
		})
	}
}
