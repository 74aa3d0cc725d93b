package client

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// recordedSchema returns the schema the node announced in its latest pull
// or repair (sync_node_schema), "" when none is recorded.
func recordedSchema(ctx context.Context, db bun.IDB) (string, error) {
	var text []string
	if err := db.NewRaw("SELECT announced FROM sync_node_schema WHERE id = 1").Scan(ctx, &text); err != nil {
		return "", fmt.Errorf("read the recorded schema: %w", err)
	}
	if len(text) == 0 {
		return "", nil
	}
	return text[0], nil
}

// recordSchema records the schema the node announces now, in tx, once a
// pull or repair with it applied.
// The caller commits tx and then sets c.schemaRecorded.
func (c *Client) recordSchema(ctx context.Context, tx bun.IDB) error {
	if c.schemaRecorded {
		return nil
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO sync_node_schema (id, announced) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET announced = EXCLUDED.announced",
		c.registry().NodeSchema().String())
	if err != nil {
		return fmt.Errorf("record the schema: %w", err)
	}
	return nil
}

// backfill returns what the node's next pull asks the server to backfill
// (protocol.PullRequest.Backfill): the pulled tables and columns its
// schema gained since the schema it recorded (its application migrated),
// with the text of the request; nil and "" for none, or when no schema
// is recorded (a node that has not pulled since it registered, or since
// it upgraded from a release of dbsync that did not record it).
func (c *Client) backfill(ctx context.Context) (*dbsync.Registry, string, error) {
	if c.schemaRecorded {
		return nil, "", nil
	}
	text, err := recordedSchema(ctx, c.db)
	if err != nil || text == "" {
		return nil, "", err
	}
	now := c.reg.NodeSchema()
	if text == now.String() {
		c.schemaRecorded = true
		return nil, "", nil
	}
	before, err := protocol.ParseNodeSchema(text)
	if err != nil {
		c.log.WarnContext(ctx, "client: the recorded schema is not readable; no backfill", slog.String("error", err.Error()))
		return nil, "", nil
	}
	want := &protocol.NodeSchema{}
	for _, nt := range now.Tables {
		if !c.reg.Table(nt.Name).Direction.Pulled() {
			continue
		}
		bt := before.Table(nt.Name)
		if bt == nil {
			want.Tables = append(want.Tables, nt)
			continue
		}
		gained := protocol.SchemaTable{Name: nt.Name, KeyKind: nt.KeyKind, Columns: nt.Columns[:1:1]}
		for _, col := range nt.Columns[1:] {
			if bc := bt.Column(col.Name); bc == nil || bc.Class != col.Class {
				gained.Columns = append(gained.Columns, col)
			}
		}
		if len(gained.Columns) > 1 {
			want.Tables = append(want.Tables, gained)
		}
	}
	if len(want.Tables) == 0 {
		return nil, "", nil
	}
	reg, err := c.reg.Project(want)
	if err != nil {
		return nil, "", err
	}
	return reg, want.String(), nil
}

// applyBackfill writes one backfill line of a pull: rows of a table new to
// the node are written whole (replacing a row with the same key), the
// columns a table gained are set in the rows the node holds (rows it does
// not hold are left out). Local values of those columns are overwritten,
// pending changes included (merge.md E3).
func (c *Client) applyBackfill(ctx context.Context, tx bun.Tx, st *pullState, msg *protocol.Message) error {
	var t *dbsync.Table
	if st.backfill != nil {
		t = st.backfill.Table(msg.Table)
	}
	if t == nil {
		return fmt.Errorf("%w: backfill rows for table %q, which the pull did not ask for", dbsync.ErrBadResponse, msg.Table)
	}
	rows, err := decodeRows(t, msg.Rows)
	if err != nil {
		return err
	}
	st.backfilled += int64(len(msg.Rows))
	full := c.reg.Table(t.Name)
	whole := len(t.Columns) == len(full.Columns)
	tc := &store.Touched{}
	for _, strct := range rows {
		if whole {
			tc.WroteRow(c.reg, full, strct)
		} else {
			tc.References(c.reg, t, strct) // the gained columns' references only
		}
	}
	if whole {
		st.written[t.Name] = true
		err = store.Write(ctx, tx, full, rows, true)
	} else {
		err = store.Update(ctx, tx, t, rows)
	}
	if err != nil {
		return err
	}
	return st.settle(ctx, tx, tc)
}

// backfillFirst pulls when the node's schema gained columns or tables
// since its latest pull (backfill): before the node pushes, so that a
// push of rows changed before the upgrade does not send the new columns'
// local defaults over the server's values. It returns the pull, nil for
// none.
func (c *Client) backfillFirst(ctx context.Context) (*PullResult, error) {
	if _, text, err := c.backfill(ctx); err != nil || text == "" {
		return nil, err
	}
	return c.pull(ctx)
}
