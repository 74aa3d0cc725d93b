package client

import (
	"context"
	"fmt"
	"iter"
	"reflect"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// Query reads one page of rows of a pulled table from the server (not from
// the local database), with equality filters: python-sync-db's query.
// Resume with req.After, req.AfterSet = resp.Next, true while resp.More
// (Next may be the empty text key). A table the node does not track, or
// tracks push-only, is dbsync.ErrUnknownTable; a nil req is
// dbsync.ErrBadRequest.
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
// push-only, is dbsync.ErrUnknownTable, as for Query. The rows it holds
// are bounded: a result whose rows pass Config.MaxQueryBytes (as they
// came, in JSON; default 256 MiB) fails with an error wrapping
// dbsync.ErrTooLarge that names the bound. Read a larger result with
// [QueryEach], a page at a time.
func QueryAll[T any](ctx context.Context, c *Client, equal map[string]string) ([]*T, error) {
	limit := c.maxQueryBytes()
	var out []*T
	var size int64
	for row, err := range queryRows[T](ctx, c, equal) {
		if err != nil {
			return nil, err
		}
		size += int64(len(row.raw))
		if limit > 0 && size > limit {
			return nil, fmt.Errorf("%w: the query of %s returns more than %d bytes of rows (client.Config.MaxQueryBytes; client.QueryEach reads it a page at a time)",
				dbsync.ErrTooLarge, row.table, limit)
		}
		out = append(out, row.v)
	}
	return out, nil
}

// QueryEach reads the rows of T's table on the server that match the
// filters as QueryAll does, yielding each as it is decoded: memory holds
// one page of rows, whatever the result's size or its pages' number, and
// Config.MaxQueryBytes does not apply: a result that never ends (a
// server broken or hostile) goes on until the loop breaks or ctx ends.
// Breaking out of the loop stops the reading. An error
// (as QueryAll's) is yielded once, with a nil row, and ends the sequence.
//
//	for todo, err := range client.QueryEach[Todo](ctx, c, map[string]string{"done": "false"}) {
//		if err != nil {
//			return err
//		}
//		…
//	}
func QueryEach[T any](ctx context.Context, c *Client, equal map[string]string) iter.Seq2[*T, error] {
	return func(yield func(*T, error) bool) {
		for row, err := range queryRows[T](ctx, c, equal) {
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(row.v, nil) {
				return
			}
		}
	}
}

// queried is one row a query returned: decoded, and as it came.
type queried[T any] struct {
	v     *T
	raw   []byte
	table string
}

// queryRows reads the rows of T's table that match equal, page by page
// (Query), and yields each, decoded. A page whose cursor came before
// (found as Brent's cycle detection finds it, holding one cursor however
// many pages come), or with a cursor and no rows, ends it with
// dbsync.ErrBadResponse: each page must move on.
func queryRows[T any](ctx context.Context, c *Client, equal map[string]string) iter.Seq2[queried[T], error] {
	return func(yield func(queried[T], error) bool) {
		fail := func(err error) { yield(queried[T]{}, err) }
		t := c.registry().TableOf(reflect.TypeFor[T]())
		if t == nil {
			fail(fmt.Errorf("%w: %s is not a tracked model", dbsync.ErrUnknownTable, reflect.TypeFor[T]()))
			return
		}
		req := &protocol.QueryRequest{Table: t.Name, Equal: equal}
		// A cursor answered before (marked), compared with each later
		// one; moved on to the latest after span pages, span doubling.
		var mark string
		marked, steps, span := false, 0, 1
		for {
			resp, err := c.Query(ctx, req)
			if err != nil {
				fail(err)
				return
			}
			for _, raw := range resp.Rows {
				row, err := protocol.ParseRow(raw)
				if err != nil {
					fail(fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err))
					return
				}
				ptr, err := t.Codec().DecodeRow(row)
				if err != nil {
					fail(fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err))
					return
				}
				if !yield(queried[T]{v: ptr.Interface().(*T), raw: raw, table: t.Name}, nil) {
					return
				}
			}
			if !resp.More && resp.Next == "" {
				return
			}
			if len(resp.Rows) == 0 {
				// Only the absence of next ends the rows: followed, such
				// pages could come for ever, at no bytes of rows.
				fail(fmt.Errorf("%w: query of %s answered a page with no rows and next %q (a page with next holds a row)", dbsync.ErrBadResponse, t.Name, resp.Next))
				return
			}
			if marked && resp.Next == mark {
				fail(fmt.Errorf("%w: query of %s answered cursor %q twice", dbsync.ErrBadResponse, t.Name, resp.Next))
				return
			}
			if steps++; !marked || steps == span {
				mark, marked, steps, span = resp.Next, true, 0, span*2
			}
			req.After, req.AfterSet = resp.Next, true
		}
	}
}

// maxQueryBytes is the most bytes of rows QueryAll holds
// (Config.MaxQueryBytes; 0: no bound).
func (c *Client) maxQueryBytes() int64 {
	switch n := c.cfg.MaxQueryBytes; {
	case n < 0:
		return 0
	case n == 0:
		return defaultMaxQueryBytes
	default:
		return n
	}
}

// defaultMaxQueryBytes is Config.MaxQueryBytes's default.
const defaultMaxQueryBytes = 256 << 20
