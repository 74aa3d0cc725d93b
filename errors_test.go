package dbsync_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// A newcomer who forgets to register gets ErrNotRegistered from Sync: its
// text must say what to do.
func TestErrNotRegisteredSaysWhatToDo(t *testing.T) {
	if msg := dbsync.ErrNotRegistered.Error(); !strings.Contains(msg, "Register") {
		t.Fatalf("ErrNotRegistered reads %q: it does not say to call Register", msg)
	}
}

// TestForeignKeyCode: a push refused for rows referencing missing ones
// (ErrPushRejected and ErrForeignKey, as the server wraps them) has the
// code foreign_key, which a client turns back into an error that is both;
// ErrForeignKey alone (a node's own refusal) is never on the wire.
func TestForeignKeyCode(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("%w: %w: todos 5 references missing lists 9", dbsync.ErrPushRejected, dbsync.ErrForeignKey)
	for _, c := range []struct {
		name string
		err  error
		code string
	}{
		{"push refused for a foreign key", refused, protocol.CodeForeignKey},
		{"the error of its code", dbsync.ErrorForCode(protocol.CodeForeignKey), protocol.CodeForeignKey},
		{"a server error with its code", &dbsync.ServerError{Status: 409, Code: protocol.CodeForeignKey}, protocol.CodeForeignKey},
		{"other push refusal", fmt.Errorf("%w: no", dbsync.ErrPushRejected), protocol.CodePushRejected},
	} {
		if got := dbsync.Code(c.err); got != c.code {
			t.Errorf("%s: Code = %q, want %q", c.name, got, c.code)
		}
	}
	back := &dbsync.ServerError{Status: 409, Code: protocol.CodeForeignKey}
	if !errors.Is(back, dbsync.ErrForeignKey) || !errors.Is(back, dbsync.ErrPushRejected) || errors.Is(back, dbsync.ErrPullNeeded) {
		t.Fatalf("a foreign_key answer: want ErrForeignKey and ErrPushRejected, not ErrPullNeeded")
	}
}
