// Package spool creates the temporary files in which client and handlers
// hold bodies too large for memory.
package spool

import (
	"os"
	"runtime"
)

// Create creates a temporary file in dir (os.TempDir when empty) named
// after pattern (as os.CreateTemp). Where the system allows it, the file is
// unlinked at once: the open file stays usable, and a process killed while
// it is in use leaves nothing behind. Close the file with [Discard].
func Create(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" {
		_ = os.Remove(f.Name())
	}
	return f, nil
}

// Discard closes a file from Create and removes it if it is still there.
func Discard(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}
