package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// Query reads rows of one pulled table with equality filters, in primary
// key order, one page at a time (python-sync-db's query, paginated). Table
// and column names are checked against the registry and never reach SQL
// otherwise; values are decoded into the column's Go type and written as
// literals by bun. With scopes, only rows the node may read are returned.
// A page holds at most the limit and, unless its one row passes it, the
// line budget of rows (queryPage): a shorter page says Next too.
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
	alias := t.Schema().SQLAlias
	var conds []schema.QueryAppender
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
			conds = append(conds, bun.SafeQuery("?.? IS NULL", alias, bun.Ident(col)))
			continue
		}
		if err := store.CheckValue(c.Field().Value(strct)); err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %w", dbsync.ErrBadRequest, t.Name, col, err)
		}
		lit := store.AppendLiteral(gen, nil, c.Field(), strct)
		conds = append(conds, bun.SafeQuery("?.? = ?", alias, bun.Ident(col), bun.Safe(lit)))
	}
	if req.After != "" || req.AfterSet {
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
		conds = append(conds, bun.SafeQuery("?.? > ?", alias, bun.Ident(t.PK.Name), arg))
	}
	resp = &protocol.QueryResponse{Rows: []json.RawMessage{}}
	err = s.snapshot(ctx, func(ctx context.Context, tx bun.Tx) error {
		scope, err := s.readFilter(ctx, tx, node, t, alias)
		if err != nil {
			return err
		}
		if scope != nil {
			conds = append(conds, scope)
		}
		var next reflect.Value
		resp.Rows, next, err = s.queryPage(ctx, tx, t, allOf(conds), limit)
		if err != nil {
			return err
		}
		if next.IsValid() {
			resp.Next, resp.More = t.Codec().KeyOf(next), true
		}
		return nil
	})
	if r, ok := dialect.RefusedValue(err); ok {
		// A filter value the column's type does not accept (PostgreSQL
		// parses it only against the column).
		s.log.WarnContext(ctx, "server: a query's value refused by the database", slog.String("table", t.Name), slog.String("error", err.Error()))
		return nil, fmt.Errorf("%w: a filter on %s: the server's database refuses %s", dbsync.ErrBadRequest, t.Name, r.What)
	}
	if len(req.Equal) > 0 && dialect.IsNoEquality(err) {
		s.log.WarnContext(ctx, "server: a query's filter refused by the database", slog.String("table", t.Name), slog.String("error", err.Error()))
		return nil, fmt.Errorf("%w: a filter on %s: the server's database cannot compare a filtered column (its type, such as json or xml, has no equality)",
			dbsync.ErrBadRequest, t.Name)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// queryPage reads the rows of t that meet cond, in key order, up to limit
// rows and, unless the first alone passes it, the line budget: a page of
// large rows is cut short, the rest left to the next pages. Rows are read
// one at a time (store.ScanPages), the query's size guessed from the rows
// read so far, so the server holds the page and at most one row more,
// read to learn whether more rows match. last is the page's last row when
// more match (its key is the page's next), else not valid.
func (s *Server) queryPage(ctx context.Context, tx bun.Tx, t *dbsync.Table, cond schema.QueryAppender, limit int) (raws []json.RawMessage, last reflect.Value, err error) {
	var (
		size, read, bytes int // the page's bytes; rows read, and their bytes
		more              bool
	)
	raws = []json.RawMessage{} // an empty page is [], not null
	err = store.ScanPages(ctx, tx, t, cond, func() int {
		// The page's rows left and one more, to learn whether more match.
		n := limit + 1 - len(raws)
		if read > 0 {
			// The rows the budget left is expected to hold, and one
			// more: the page ends when a row does not fit.
			n = min(n, s.rowsFitting(size, read, bytes)+1)
		}
		return n
	}, func(strct reflect.Value) (bool, error) {
		raw, err := s.encodeRow(t, strct)
		if err != nil {
			return false, err
		}
		read, bytes = read+1, bytes+len(raw)
		if len(raws) >= limit || !s.fits(size, len(raw)) {
			s.dropped(len(raw))
			more = true
			return false, nil
		}
		raws, last, size = append(raws, raw), strct, size+len(raw)
		return true, nil
	}, func() error {
		if more {
			return errPageFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, reflect.Value{}, err
	}
	if !more {
		last = reflect.Value{}
	}
	return raws, last, nil
}

// errPageFull ends the reading of a query page.
var errPageFull = errors.New("server: query page full")

// allOf is the conjunction of conds; nil when there are none.
func allOf(conds []schema.QueryAppender) schema.QueryAppender {
	if len(conds) == 0 {
		return nil
	}
	args := make([]any, len(conds))
	for i, c := range conds {
		args[i] = c
	}
	return bun.SafeQuery("("+strings.Repeat("?) AND (", len(conds)-1)+"?)", args...)
}
