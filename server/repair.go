package server

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// Repair streams every row of every table nodes pull, from one snapshot: a
// header (the latest version, the tables, the greatest integer keys), then lines of at most
// ChunkSize rows of one table, tables in dependency order, then an end line
// with the row count. Memory stays bounded by about one line, its rows
// within the line budget (streamRowsWith). Push-only tables are
// left out: they hold other nodes' rows. With scopes, only the rows the
// node may read are sent (its scope and the parents their foreign keys
// need).
func (s *Server) Repair(ctx context.Context, node int64, emit Emit) (err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "repair", NodeID: node}
	defer func() { ev.Err = err; s.emit(ctx, ev, start) }()
	if _, err := s.Seal(ctx); err != nil {
		return err
	}
	// The node holds the snapshot's version once it applies the answer
	// (a repair, or a reset): recorded now, at the latest version before
	// the snapshot, a trim before the node's next pull does not pass it.
	if s.repairNoting != nil {
		s.repairNoting()
	}
	s.noteRepaired(ctx, node)
	return s.snapshot(ctx, func(ctx context.Context, tx bun.Tx) error {
		st, err := readPullState(ctx, tx, node, 0)
		if err != nil {
			return err
		}
		latest := st.latest
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
		head := &protocol.Message{Type: protocol.MsgHeader, LatestVersionID: &latest, LatestVersionToken: st.latestToken,
			NodeVersionID: st.ownLatest, Tables: names, MaxKeys: maxKeys}
		if err := emit(head); err != nil {
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

// streamRowsWith is streamRows; with more not nil, each line's rows (as
// read, and in their wire form) are passed to it before the line is
// emitted: it returns the line's payload and how many of the rows the
// line keeps, at least one (the others go in the next lines, passed to
// it again). A line holds at most page rows and, unless a row alone
// passes it, the line budget: rows are read a line at a time
// (store.ScanPages), the query's size guessed from the rows read so far,
// so that memory holds about one line, not a page of large rows.
func (s *Server) streamRowsWith(ctx context.Context, tx bun.Tx, node int64, t *dbsync.Table, page int, typ string, more func([]reflect.Value, []json.RawMessage) (protocol.Payload, int, error), emit Emit) (int64, error) {
	cond, err := s.readFilter(ctx, tx, node, t, t.Schema().SQLAlias)
	if err != nil {
		return 0, err
	}
	var (
		total       int64
		raws        []json.RawMessage
		rows        []reflect.Value
		size        int
		nextRaw     json.RawMessage // read: the first row of the next line
		nextRow     reflect.Value
		read, bytes int // rows read, and their bytes
	)
	add := func(raw json.RawMessage, strct reflect.Value) {
		raws, rows, size = append(raws, raw), append(rows, strct), size+len(raw)
	}
	full := func() bool { return len(raws) >= page || size >= s.lineBudget }
	send := func() error {
		for len(raws) > 0 {
			msg := &protocol.Message{Type: typ, Table: t.Name, Rows: raws}
			if more != nil {
				payload, n, err := more(rows, raws)
				if err != nil {
					return err
				}
				msg.Rows, msg.Payload = raws[:n:n], payload
			}
			total += int64(len(msg.Rows))
			if err := emit(msg); err != nil {
				return err
			}
			// The rows left, in slices of their own: the emitted ones are
			// let go.
			raws, rows = slices.Clone(raws[len(msg.Rows):]), slices.Clone(rows[len(msg.Rows):])
		}
		raws, rows, size = nil, nil, 0
		return nil
	}
	err = store.ScanPages(ctx, tx, t, cond, func() int {
		n := page - len(raws)
		if read > 0 {
			// The rows the budget left is expected to hold, and one
			// more: the line ends when a row does not fit.
			n = min(n, s.rowsFitting(size, read, bytes)+1)
		}
		return n
	}, func(strct reflect.Value) (bool, error) {
		raw, err := s.encodeRow(t, strct)
		if err != nil {
			return false, err
		}
		read, bytes = read+1, bytes+len(raw)
		if len(raws) >= page || !s.fits(size, len(raw)) {
			nextRaw, nextRow = raw, strct
			return false, nil
		}
		add(raw, strct)
		return !full(), nil
	}, func() error {
		if nextRaw == nil && !full() {
			return nil // the next page adds to the line
		}
		if err := send(); err != nil {
			return err
		}
		if nextRaw != nil {
			add(nextRaw, nextRow)
			nextRaw = nil
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, send()
}

// fits reports whether a row of next bytes goes in a line holding size
// bytes of rows: within the line budget, or alone. Pages and chunks are
// bounded in rows, not bytes: lines cut by it (lineReader.lines,
// streamRowsWith) never pass protocol.MaxLineBytes unless a row alone
// does.
func (s *Server) fits(size, next int) bool {
	return size == 0 || size+next <= s.lineBudget
}
