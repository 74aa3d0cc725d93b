package peer_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestOrphanReferenceRefusedBySender: a SQLite node whose application
// wrote a todo with foreign keys off (SQLite's default on a connection
// that does not turn them on) holds a reference to a list it does not
// have. Sending it as null (what the node did) made every receiver refuse
// the batch at every sync, naming a list 0 and neither the row nor the
// node that holds it. The holder refuses to send it instead, naming the
// row, the column, the missing key and itself, whichever side starts the
// sync (over HTTP too: 409 constraint);
// the receiver writes nothing, and once the application repairs the row
// the nodes converge. The holder's Digest fails the same way.
func TestOrphanReferenceRefusedBySender(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, kind, nil)
			insert(t, a, &testmodels.List{Name: "x"})
			conn, err := a.DB().Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"PRAGMA foreign_keys = OFF", "INSERT INTO todos (list_id, title) VALUES (999, 'orphan')", "PRAGMA foreign_keys = ON"} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}
			var todo int64
			if err := a.DB().QueryRowContext(ctx, "SELECT id FROM todos").Scan(&todo); err != nil {
				t.Fatal(err)
			}
			secret := []byte("mesh secret of the orphan reference test, long enough")
			srv := httptest.NewServer(peerhttp.NewHandler(a, &peerhttp.Config{Secret: secret}))
			defer srv.Close()
			for _, dir := range []struct {
				name string
				from *peer.Node
				to   peer.Peer
				want error // over HTTP the code says ErrConstraint
			}{
				{"holder starts", a, b.AsPeer(), dbsync.ErrForeignKey},
				{"receiver starts", b, a.AsPeer(), dbsync.ErrForeignKey},
				{"receiver starts over HTTP", b, &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: b}, peer.ErrConstraint},
			} {
				_, err := dir.from.Sync(ctx, dir.to)
				if !errors.Is(err, dir.want) {
					t.Fatalf("%s: sync: %v, want %v", dir.name, err, dir.want)
				}
				for _, want := range []string{"todos " + itoa(todo), "lists 999", "list_id", a.ID().String()} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: %q does not name %q", dir.name, err, want)
					}
				}
				if k := count(t, b, "todos"); k != 0 {
					t.Fatalf("%s: the receiver holds %d todos", dir.name, k)
				}
			}
			if _, err := a.Digest(ctx); !errors.Is(err, dbsync.ErrForeignKey) {
				t.Fatalf("digest of the holder: %v, want dbsync.ErrForeignKey", err)
			}
			exec(t, a, "UPDATE todos SET list_id = (SELECT id FROM lists WHERE name = 'x')")
			mustSync(t, a, b.AsPeer())
			mustSync(t, b, a.AsPeer())
			sameDigests(t, a, b)
			if k := count(t, b, "todos"); k != 1 {
				t.Fatalf("the receiver holds %d todos after the repair, want 1", k)
			}
		})
	}
}
