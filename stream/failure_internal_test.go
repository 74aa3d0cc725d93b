package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
)

// TestSendFailure: the error frame carries dbsync's own refusals as they
// are, and never the text of a database or system error.
func TestSendFailure(t *testing.T) {
	t.Parallel()
	dbErr := errors.New(`write notes: SQL logic error: unrecognized token: "!" (1)`)
	for _, tc := range []struct {
		name string
		err  error
		want string // the message sent, or a part of it
		hide string // text that must not be sent
	}{
		{"database error", fmt.Errorf("apply: %w", dbErr), "internal error", "SQL logic error"},
		{"authentication", fmt.Errorf("%w: bad MAC", ErrAuth), "authentication failed", "bad MAC"},
		{"bad value", &dbsync.ValueError{Table: "notes", Key: "k", Column: "body", Err: fmt.Errorf("%w: text contains a NUL character", dbsync.ErrBadRequest)}, "NUL", ""},
		{"clock", fmt.Errorf("%w: notes k was written ahead", peer.ErrClockSkew), "clock too far ahead", ""},
		{"frame", fmt.Errorf("%w: unknown type", ErrFrame), "malformed frame", ""},
	} {
		s := &session{out: make(chan outFrame, 1)}
		s.sendFailure(tc.err)
		f := <-s.out
		var got failure
		if err := json.Unmarshal(f.payload, &got); err != nil || f.typ != frameError {
			t.Fatalf("%s: frame %q %s: %v", tc.name, f.typ, f.payload, err)
		}
		if !strings.Contains(got.Message, tc.want) || tc.hide != "" && strings.Contains(got.Message, tc.hide) {
			t.Errorf("%s: sent %q, want %q without %q", tc.name, got.Message, tc.want, tc.hide)
		}
	}
}
