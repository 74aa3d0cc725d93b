package peerhttp_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

func TestParsePosition(t *testing.T) {
	const epoch = "0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01"
	for _, tc := range []struct {
		query string
		want  peer.Position
		bad   bool
	}{
		{query: "after=0", want: peer.Position{}},
		{query: "after=7&epoch=" + epoch + "&own=true", want: peer.Position{Seq: 7, Epoch: epoch, Own: true}},
		{query: "", bad: true},
		{query: "after=-1", bad: true},
		{query: "after=x", bad: true},
		{query: "after=1&own=yes", bad: true},
		{query: "after=1&epoch=e2", bad: true},
		{query: "after=1&epoch=0D9F6A1E-3C4B-4F8E-9A2D-5B6C7D8E9F01", bad: true},
		{query: "after=9223372036854775808", bad: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := peerhttp.ParsePosition(q)
			if tc.bad {
				if !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("ParsePosition(%q) = %+v, %v; want ErrBadRequest", tc.query, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePosition(%q) = %+v, %v; want %+v", tc.query, got, err, tc.want)
			}
		})
	}
}

// A position the server cannot read is a 400 with a JSON error, over the
// wire too.
func TestChangesBadPosition(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			status, raw, code := e.do(e.request(http.MethodGet, "changes", "after=0&limit=10&epoch=not-a-uuid", nil))
			if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
				t.Fatalf("changes with a malformed epoch: %d %s %s, want 400 bad_request", status, code, raw)
			}
		})
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add("after=7&epoch=0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01&own=true")
	f.Add("after=0")
	f.Add("after=" + strconv.Itoa(-1))
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		pos, err := peerhttp.ParsePosition(q)
		if err != nil {
			if !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if id, err := uuid.Parse(pos.Epoch); pos.Seq < 0 || pos.Epoch != "" && (err != nil || id.String() != pos.Epoch) {
			t.Fatalf("accepted %q as %+v", raw, pos)
		}
	})
}

// TestChangesFullFlag: full takes what own takes, "true" or absent; any
// other value is a 400 with a JSON error and writes nothing. Before, it
// meant false: with a position of an epoch the node does not know, the
// node recorded a restore of its own and answered resync_needed.
func TestChangesFullFlag(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			restores := func() int64 {
				var n int64
				if err := e.node.DB().QueryRowContext(ctx, "SELECT restores FROM sync_lww_feed WHERE id = 1").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			epoch := uuid.NewString() // not one of the node's
			for _, full := range []string{"yes", "false", "1", "TRUE", "true "} {
				q := url.Values{"after": {"0"}, "limit": {"10"}, "epoch": {epoch}, "full": {full}}.Encode()
				status, raw, code := e.do(e.request(http.MethodGet, "changes", q, nil))
				if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
					t.Errorf("full=%q: %d %s %s, want 400 bad_request", full, status, code, raw)
				}
			}
			if n := restores(); n != 0 {
				t.Fatalf("a refused request recorded %d restores", n)
			}
			q := url.Values{"after": {"0"}, "limit": {"10"}, "epoch": {epoch}, "full": {"true"}}.Encode()
			if status, raw, _ := e.do(e.request(http.MethodGet, "changes", q, nil)); status != http.StatusOK {
				t.Fatalf("full=true: %d %s", status, raw)
			}
		})
	}
}

// TestApplyPageEpochChecked: a page of POST /apply whose epoch is not a
// UUID in canonical form (peer.ValidEpoch, as GET /changes checks its
// epoch) is a 400 and applies nothing. Before, it was taken as the
// cursor's epoch, and the requester, reading that cursor back, took it
// for a restore of its own (or its GET /changes was refused).
func TestApplyPageEpochChecked(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newPeerEnv(t, kind, nil)
			before := e.state()
			for _, epoch := range []string{"not-a-uuid", "0D9F6A1E-3C4B-4F8E-9A2D-5B6C7D8E9F01", "urn:uuid:0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01"} {
				raw, err := json.Marshal(peer.Batch{Changes: []peer.Change{noteChange(t, e.node, e.from, "n", time.Now())}, Last: 1, Epoch: epoch})
				if err != nil {
					t.Fatal(err)
				}
				status, body, code := e.do(e.request(http.MethodPost, "apply", "", append(raw, '\n')))
				if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
					t.Errorf("page epoch %q: %d %s %s, want 400 bad_request", epoch, status, code, body)
				}
				if after := e.state(); after != before {
					t.Fatalf("page epoch %q: the refused apply changed the node (%+v, was %+v)", epoch, after, before)
				}
			}
		})
	}
}
