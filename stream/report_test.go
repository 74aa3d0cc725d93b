package stream_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/stream"
)

// TestReportString: a Report prints as one line saying what the session
// did. Before, fmt printed the struct's fields.
func TestReportString(t *testing.T) {
	t.Parallel()
	r := &stream.Report{Peer: uuid.MustParse("22222222-2222-4222-8222-222222222222"), Received: 2, Sent: 1}
	want := "with 22222222-2222-4222-8222-222222222222: received 2 version(s), sent 1 version(s)"
	if got := fmt.Sprint(r); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
