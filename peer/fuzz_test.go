package peer_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// FuzzApply feeds arbitrary bytes, as a peer's apply request body, to a
// node on a SQLite file: the node never panics, refuses with an error
// users can tell apart (bad request, unknown table or column, clock skew,
// constraint), and whatever it accepted leaves its data consistent: every
// live version has its row, no row references a missing one; whatever it
// refused changed nothing, neither data nor the peer's cursor.
func FuzzApply(f *testing.F) {
	n := newNode(f, dbtest.KindSQLite, nil)
	from := uuid.New()
	note := newNote("seed")
	at := time.Now().UnixMilli() << 16
	row := string(noteRow(f, n, note))
	f.Add([]byte(`{"changes":[{"table":"notes","id":"` + note.ID.String() + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":` + row + `,"seq":1}],"last":1}` + "\n"))
	f.Add([]byte(`{"changes":[{"table":"notes","id":"` + note.ID.String() + `","hlc":` + itoa(at+1) + `,"node":"` + from.String() + `","deleted":true,"seq":2}],"last":2}`))
	f.Add([]byte(`{"changes":[{"table":"lists","id":"` + uuid.NewString() + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":{"name":"l"},"seq":3}],"last":3}`))
	f.Add([]byte(`{"changes":[{"table":"todos","id":"` + uuid.NewString() + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":{"list_id":999,"title":"t","done":false},"seq":4}],"last":4}`))
	list := uuid.NewString()
	f.Add([]byte(`{"changes":[{"table":"lists","id":"` + list + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":{"name":"l"},"seq":5},` +
		`{"table":"todos","id":"` + uuid.NewString() + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":{"list_id":"` + list + `","title":"t","done":false},"seq":6}],"last":6}`))
	f.Add([]byte(`{"changes":[{"table":"lists","id":"` + list + `","hlc":` + itoa(at+2) + `,"node":"` + from.String() + `","deleted":true,"seq":7}],"last":7}`))
	f.Add([]byte(`{"changes":[{"table":"todos","id":"` + uuid.NewString() + `","hlc":` + itoa(at) + `,"node":"` + from.String() + `","row":{"list_id":"` + uuid.NewString() + `","title":"t","done":false},"seq":8}],"last":8}`))
	f.Add([]byte(`{"changes":[{"table":"notes","id":"` + note.ID.String() + `","hlc":` + itoa(at+3) + `,"node":"` + from.String() + `","row":` + row + `,"seq":9}],"last":9}{"changes":[{"table":"todos","id":"` + uuid.NewString() + `"`))
	f.Add([]byte(`{"changes":[{"table":"secrets","id":"x"}],"last":1}`))
	f.Add([]byte(`{"changes":{}}`))
	f.Add([]byte(`{"changes":[],"last":-5}{"changes":[]`))
	f.Add([]byte(`{"changes":[{"table":"notes","id":"` + uuid.NewString() + `","hlc":9223372036854775807,"node":"` + from.String() + `","row":` + row + `}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before, seq := digest(t, n), cursorOf(t, n, from)
		_, err := n.Apply(ctx, from, peerhttp.DecodeBatches(bytes.NewReader(body)))
		if err != nil {
			if after := digest(t, n); after != before {
				t.Fatalf("apply %q refused (%v) but changed the data", body, err)
			}
			if after := cursorOf(t, n, from); after != seq {
				t.Fatalf("apply %q refused (%v) but moved the cursor from %d to %d", body, err, seq, after)
			}
			for _, known := range []error{dbsync.ErrBadRequest, dbsync.ErrUnknownTable, dbsync.ErrUnknownColumn, peer.ErrClockSkew, peer.ErrConstraint} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("apply %q: %v, not an error of the peer's making", body, err)
		}
		var orphans, missing int
		if err := n.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM todos WHERE list_id NOT IN (SELECT id FROM lists)`).Scan(&orphans); err != nil {
			t.Fatal(err)
		}
		if err := n.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sync_lww v WHERE NOT v.deleted AND v.content_type_id = ? AND NOT EXISTS (SELECT 1 FROM notes WHERE CAST(notes.id AS TEXT) = v.row_id)`,
			dbsync.ContentTypeID("notes")).Scan(&missing); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 || missing != 0 {
			t.Fatalf("apply %q accepted: %d orphan todos, %d live notes without a row", body, orphans, missing)
		}
	})
}

func cursorOf(t testing.TB, n *peer.Node, of uuid.UUID) int64 {
	t.Helper()
	c, err := n.Cursor(ctx, of)
	if err != nil {
		t.Fatal(err)
	}
	return c.Seq
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
