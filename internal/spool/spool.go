// Package spool creates the temporary files in which client and handlers
// hold bodies too large for memory.
package spool

import (
	"fmt"
	"os"
	"runtime"
)

// CheckDir returns an error unless dir names an existing directory (or is
// empty: os.TempDir). The constructors taking a SpoolDir call it, so that
// a wrong one is refused when the program starts rather than at the first
// body large enough to be spooled. Whether files can be created there is
// found only then.
func CheckDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

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
