package dbtest

import (
	"strings"
	"testing"
)

// DatabaseWords are fragments of the databases' own error texts, which an
// answer on the wire must never carry.
var DatabaseWords = []string{"SQLSTATE", "ERROR:", "violates", "constraint failed", "duplicate key", "pq:", "sqlite"}

// NoDatabaseText fails t when msg, an answer's message, carries one of
// DatabaseWords.
func NoDatabaseText(t testing.TB, what, msg string) {
	t.Helper()
	for _, w := range DatabaseWords {
		if strings.Contains(msg, w) {
			t.Fatalf("%s: the answer %q carries the database's text (%q)", what, msg, w)
		}
	}
}
