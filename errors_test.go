package dbsync_test

import (
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
)

// A newcomer who forgets to register gets ErrNotRegistered from Sync: its
// text must say what to do.
func TestErrNotRegisteredSaysWhatToDo(t *testing.T) {
	if msg := dbsync.ErrNotRegistered.Error(); !strings.Contains(msg, "Register") {
		t.Fatalf("ErrNotRegistered reads %q: it does not say to call Register", msg)
	}
}
