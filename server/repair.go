package server

import (
	"context"
	"encoding/json"
	"reflect"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// Repair streams every row of every table nodes pull, from one snapshot: a
// header (the latest version, the tables, the greatest integer keys), then lines of at most
// ChunkSize rows of one table, tables in dependency order, then an end line
// with the row count. Memory stays bounded by one line. Push-only tables are
// left out: they hold other nodes' rows. With scopes, only the rows the
// node may read are sent (its scope and the parents their foreign keys
// need).
func (s *Server) Repair(ctx context.Context, node int64, emit Emit) (err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "repair", NodeID: node}
	defer func() { ev.Err = err; s.emit(ctx, ev, start) }()
	s.noteSeen(ctx, node)
	if _, err := s.Seal(ctx); err != nil {
		return err
	}
	return s.snapshot(ctx, func(ctx context.Context, tx bun.Tx) error {
		latest, err := latestVersion(ctx, tx)
		if err != nil {
			return err
		}
		var tables []*dbsync.Table
		var names []string
		for _, t := range s.reg.Tables() {
			if t.Direction.Pulled() {
				tables = append(tables, t)
				names = append(names, t.Name)
			}
		}
		// The greatest keys, as in a pull's header: a node that resets
		// moves its unpushed inserts out of them (K1).
		maxKeys, err := s.maxKeys(ctx, tx)
		if err != nil {
			return err
		}
		ev.VersionID = latest
		if err := emit(&protocol.Message{Type: protocol.MsgHeader, LatestVersionID: &latest, Tables: names, MaxKeys: maxKeys}); err != nil {
			return err
		}
		var total int64
		for _, t := range tables {
			n, err := s.streamRows(ctx, tx, node, t, s.cfg.ChunkSize, protocol.MsgRows, emit)
			if err != nil {
				return err
			}
			total += n
		}
		ev.Rows = total
		return emit(&protocol.Message{Type: protocol.MsgEnd, RowCount: total})
	})
}

// streamRows emits, as lines of type typ of at most page rows, the rows of
// t the node may read, with t's columns, in key order; it returns how many.
func (s *Server) streamRows(ctx context.Context, tx bun.Tx, node int64, t *dbsync.Table, page int, typ string, emit Emit) (int64, error) {
	return s.streamRowsWith(ctx, tx, node, t, page, typ, nil, emit)
}

// streamRowsWith is streamRows; with more not nil, each line is passed to
// it, with its rows, before it is emitted.
func (s *Server) streamRowsWith(ctx context.Context, tx bun.Tx, node int64, t *dbsync.Table, page int, typ string, more func(*protocol.Message, []reflect.Value) error, emit Emit) (int64, error) {
	cond, err := s.readFilter(ctx, tx, node, t, t.Schema().SQLAlias)
	if err != nil {
		return 0, err
	}
	var total int64
	err = store.ScanWhere(ctx, tx, t, page, cond, func(rows []reflect.Value) error {
		raws := make([]json.RawMessage, len(rows))
		for i, strct := range rows {
			raw, err := t.Codec().AppendRow(nil, strct)
			if err != nil {
				return err
			}
			raws[i] = raw
		}
		// A page of large rows goes in several lines (byBudget).
		return s.byBudget(raws, func(lo, hi int) error {
			msg := &protocol.Message{Type: typ, Table: t.Name, Rows: raws[lo:hi]}
			total += int64(hi - lo)
			if more != nil {
				if err := more(msg, rows[lo:hi]); err != nil {
					return err
				}
			}
			return emit(msg)
		})
	})
	return total, err
}

// byBudget cuts rows into consecutive lines [lo, hi) of at most
// s.lineBudget bytes of rows each (a row larger alone is a line of its
// own) and calls send for each, so that no line of an answer passes
// protocol.MaxLineBytes: pages and chunks are bounded in rows, not bytes.
func (s *Server) byBudget(rows []json.RawMessage, send func(lo, hi int) error) error {
	for lo := 0; lo < len(rows); {
		hi, size := lo, 0
		for hi < len(rows) && s.fits(size, len(rows[hi])) {
			size += len(rows[hi])
			hi++
		}
		if err := send(lo, hi); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// fits reports whether a row of next bytes goes in a line holding size
// bytes of rows: within the line budget, or alone.
func (s *Server) fits(size, next int) bool {
	return size == 0 || size+next <= s.lineBudget
}
