package peerhttp_test

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/protocol"
)

func TestParsePosition(t *testing.T) {
	mark := &peer.Mark{Table: "notes", ID: "n1", HLC: 42, Node: "x"}
	for _, tc := range []struct {
		query string
		want  peer.Position
		bad   bool
	}{
		{query: "after=0", want: peer.Position{}},
		{query: "after=7&epoch=e2&own=true", want: peer.Position{Seq: 7, Epoch: "e2", Own: true}},
		{query: "after=7&at_table=notes&at_id=n1&at_hlc=42&at_node=x", want: peer.Position{Seq: 7, At: mark}},
		{query: "after=7&at_table=notes&at_id=n1&at_hlc=42", want: peer.Position{Seq: 7, At: &peer.Mark{Table: "notes", ID: "n1", HLC: 42}}},
		{query: "", bad: true},
		{query: "after=-1", bad: true},
		{query: "after=x", bad: true},
		{query: "after=1&own=yes", bad: true},
		{query: "after=1&at_table=notes", bad: true},
		{query: "after=1&at_id=n1&at_hlc=1", bad: true},
		{query: "after=1&at_table=notes&at_id=n1&at_hlc=-5", bad: true},
		{query: "after=1&at_table=notes&at_id=n1&at_hlc=9223372036854775808", bad: true},
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
			if err != nil || got.Seq != tc.want.Seq || got.Epoch != tc.want.Epoch || got.Own != tc.want.Own ||
				(got.At == nil) != (tc.want.At == nil) || (got.At != nil && *got.At != *tc.want.At) {
				t.Fatalf("ParsePosition(%q) = %+v (at %+v), %v; want %+v (at %+v)", tc.query, got, got.At, err, tc.want, tc.want.At)
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
			status, raw, code := e.do(e.request(http.MethodGet, "changes", "after=0&limit=10&at_table=notes", nil))
			if status != http.StatusBadRequest || code != protocol.CodeBadRequest {
				t.Fatalf("changes with half a mark: %d %s %s, want 400 bad_request", status, code, raw)
			}
		})
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add("after=7&epoch=e&own=true&at_table=notes&at_id=n1&at_hlc=42&at_node=x")
	f.Add("after=0")
	f.Add("after=1&at_hlc=" + strconv.Itoa(-1))
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
		if pos.Seq < 0 || (pos.At != nil && (pos.At.HLC < 0 || pos.At.Table == "" || pos.At.ID == "")) {
			t.Fatalf("accepted %q as %+v", raw, pos)
		}
	})
}
