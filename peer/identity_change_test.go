package peer_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestIdentityChangeRefused: the identity (sync_uuid) of a row of a table
// with an integer key cannot change once set. Taken, a new identity
// travelled as a delete of the old one and an insert of the new: every
// other node deleted the rows that referenced the old one (a delete wins
// over the rows that reference the deleted row), and those deletes came
// back and deleted them on the node that made the change too, though no
// one deleted them. The same identity written in another spelling is no
// change and stays allowed.
func TestIdentityChangeRefused(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		for _, changer := range []string{"first", "second"} {
			t.Run(k.name+"/on the "+changer+" node", func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, "sqlite", nil), newNode(t, k.other, nil)
				if changer == "second" {
					a, b = b, a
				}
				l := &testmodels.List{Name: "home"}
				insert(t, a, l)
				insert(t, a, &testmodels.Todo{ListID: l.ID, Title: "milk"})
				mustSync(t, a, b.AsPeer())
				for _, to := range []any{uuid.NewString(), nil} {
					_, err := a.DB().ExecContext(ctx, "UPDATE lists SET sync_uuid = ? WHERE id = ?", to, l.ID)
					if err == nil {
						t.Errorf("a change of a row's identity to %v was accepted", to)
					} else if !strings.Contains(err.Error(), "sync_uuid") {
						t.Errorf("a change of a row's identity to %v: %v, want an error naming sync_uuid", to, err)
					}
				}
				var id string
				if err := a.DB().QueryRowContext(ctx, "SELECT sync_uuid FROM lists WHERE id = ?", l.ID).Scan(&id); err != nil {
					t.Fatal(err)
				}
				exec(t, a, "UPDATE lists SET sync_uuid = ?, name = 'house' WHERE id = ?", strings.ToUpper(id), l.ID)
				mustSync(t, a, b.AsPeer())
				mustSync(t, b, a.AsPeer())
				mustSync(t, a, b.AsPeer())
				for i, n := range [...]string{"changer", "other"} {
					if got := count(t, [...]*peer.Node{a, b}[i], "todos"); got != 1 {
						t.Errorf("the %s node holds %d todos, want 1", n, got)
					}
				}
				sameLive(t, a, b)
				sameDigests(t, a, b)
			})
		}
	}
}
