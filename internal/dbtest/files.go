package dbtest

import (
	"os"
	"strings"
	"testing"
)

// OpenIn counts this process's open files in dir, which finds spool
// files that have no name (spool.Create) but were not closed. It
// skips the test where /proc/self/fd is missing.
func OpenIn(t testing.TB, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir+string(os.PathSeparator)) {
			n++
		}
	}
	return n
}
