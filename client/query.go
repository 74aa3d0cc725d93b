package client

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// Query reads one page of rows of a pulled table from the server (not from
// the local database), with equality filters: python-sync-db's query.
// Resume with req.After = resp.Next while Next is not empty. A table the
// node does not track, or tracks push-only, is dbsync.ErrUnknownTable; a
// nil req is dbsync.ErrBadRequest.
func (c *Client) Query(ctx context.Context, req *protocol.QueryRequest) (resp *protocol.QueryResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "query"}
	defer func() {
		ev.Err = err
		if resp != nil {
			ev.Rows = int64(len(resp.Rows))
		}
		c.emit(ctx, ev, start)
	}()
	if req == nil {
		return nil, fmt.Errorf("%w: Query needs a request naming a table", dbsync.ErrBadRequest)
	}
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	t := c.registry().Table(req.Table)
	if t == nil {
		return nil, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, req.Table)
	}
	if !t.Direction.Pulled() {
		return nil, fmt.Errorf("%w: %q is push-only (dbsync.PushOnly): queries never return it", dbsync.ErrUnknownTable, req.Table)
	}
	return c.tr.Query(ctx, c.call(node), req)
}

// QueryAll reads every row of T's table on the server that matches the
// filters (column → value, as in protocol.QueryRequest.Equal), page by page,
// into new model structs. A model the node does not track, or tracks
// push-only, is dbsync.ErrUnknownTable, as for Query.
func QueryAll[T any](ctx context.Context, c *Client, equal map[string]string) ([]*T, error) {
	t := c.registry().TableOf(reflect.TypeFor[T]())
	if t == nil {
		return nil, fmt.Errorf("%w: %s is not a tracked model", dbsync.ErrUnknownTable, reflect.TypeFor[T]())
	}
	var out []*T
	req := &protocol.QueryRequest{Table: t.Name, Equal: equal}
	seen := map[string]bool{} // cursors answered: each page moves on
	for {
		resp, err := c.Query(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, raw := range resp.Rows {
			row, err := protocol.ParseRow(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
			}
			ptr, err := t.Codec().DecodeRow(row)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
			}
			out = append(out, ptr.Interface().(*T))
		}
		if resp.Next == "" || len(resp.Rows) == 0 {
			return out, nil
		}
		if seen[resp.Next] {
			return nil, fmt.Errorf("%w: query of %s answered cursor %q twice", dbsync.ErrBadResponse, t.Name, resp.Next)
		}
		seen[resp.Next] = true
		req.After = resp.Next
	}
}
