package peer_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/peer"
)

// TestReportString: a Report prints as one line saying what the sync did,
// as client.SyncResult does. Before, fmt printed the struct's fields.
func TestReportString(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("11111111-1111-4111-8111-111111111111")
	for _, c := range []struct {
		r    *peer.Report
		want string
	}{
		{&peer.Report{Peer: id, Pulled: 2, Pushed: 1}, "with 11111111-1111-4111-8111-111111111111: pulled 2 version(s), pushed 1 version(s)"},
		{&peer.Report{Peer: id, Resynced: true}, "with 11111111-1111-4111-8111-111111111111: pulled 0 version(s), pushed 0 version(s); took the peer's whole state"},
	} {
		if got := fmt.Sprint(c.r); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
