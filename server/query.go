package server

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// Query reads rows of one pulled table with equality filters, in primary
// key order, one page at a time (python-sync-db's query, paginated). Table
// and column names are checked against the registry and never reach SQL
// otherwise; values are decoded into the column's Go type and written as
// literals by bun. With scopes, only rows the node may read are returned.
func (s *Server) Query(ctx context.Context, node int64, req *protocol.QueryRequest) (resp *protocol.QueryResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "query", NodeID: node}
	defer func() {
		ev.Err = err
		if resp != nil {
			ev.Rows = int64(len(resp.Rows))
		}
		s.emit(ctx, ev, start)
	}()
	s.noteSeen(ctx, node)
	if req == nil {
		return nil, fmt.Errorf("%w: empty query", dbsync.ErrBadRequest)
	}
	t := s.reg.Table(req.Table)
	if t == nil || !t.Direction.Pulled() {
		return nil, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, req.Table)
	}
	limit := req.Limit
	if limit <= 0 {
		limit = s.cfg.QueryLimit
	}
	limit = min(limit, s.cfg.MaxQueryLimit)
	slice := reflect.New(reflect.SliceOf(reflect.PointerTo(t.Schema().Type)))
	q := s.db.NewSelect().Model(slice.Interface()).OrderExpr("? ASC", bun.Ident(t.PK.Name)).Limit(int64(limit + 1))
	cond, err := s.readFilter(ctx, s.db, node, t, t.Schema().SQLAlias)
	if err != nil {
		return nil, err
	}
	if cond != nil {
		q = q.Where("?", cond)
	}
	gen := schema.NewQueryGen(s.db.Dialect())
	cols := make([]string, 0, len(req.Equal))
	for c := range req.Equal {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	for _, col := range cols {
		c := t.Column(col)
		if c == nil {
			return nil, fmt.Errorf("%w: %s.%s", dbsync.ErrUnknownColumn, t.Name, col)
		}
		strct := t.Codec().NewModel().Elem()
		isNull, err := t.Codec().ParseFilterValue(strct, col, req.Equal[col])
		if err != nil {
			return nil, err
		}
		if isNull {
			q = q.Where("? IS NULL", bun.Ident(col))
			continue
		}
		if err := store.CheckValue(c.Field().Value(strct)); err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %w", dbsync.ErrBadRequest, t.Name, col, err)
		}
		lit := store.AppendLiteral(gen, nil, c.Field(), strct)
		q = q.Where("? = ?", bun.Ident(col), bun.Safe(lit))
	}
	if req.After != "" {
		key, err := t.CanonicalKey(req.After)
		if err != nil {
			return nil, err
		}
		arg, err := t.ParseKey(key)
		if err != nil {
			return nil, err
		}
		if err := store.CheckValue(reflect.ValueOf(arg)); err != nil {
			return nil, fmt.Errorf("%w: after: %w", dbsync.ErrBadRequest, err)
		}
		q = q.Where("? > ?", bun.Ident(t.PK.Name), arg)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("query %s: %w", t.Name, err)
	}
	s2 := slice.Elem()
	resp = &protocol.QueryResponse{Rows: []json.RawMessage{}}
	for i := range min(s2.Len(), limit) {
		raw, err := t.Codec().AppendRow(nil, s2.Index(i).Elem())
		if err != nil {
			return nil, err
		}
		resp.Rows = append(resp.Rows, raw)
	}
	if s2.Len() > limit {
		resp.Next = t.Codec().KeyOf(s2.Index(limit - 1).Elem())
	}
	return resp, nil
}
