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

// Create creates a temporary file in dir (os.TempDir when empty). A
// process killed while the file is in use leaves nothing behind: on Linux
// the file never has a name (O_TMPFILE), where the file system allows it;
// elsewhere it is created named after pattern (as os.CreateTemp) and
// unlinked at once (on Windows, which cannot, it is removed by Discard).
// The open file stays usable. Close it with [Discard].
func Create(dir, pattern string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if f := createUnnamed(dir); f != nil {
		return f, nil
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if !keepsName {
		if err := os.Remove(f.Name()); err != nil {
			// Discard would leave it behind: refuse rather than leak.
			_ = f.Close()
			_ = os.Remove(f.Name())
			return nil, err
		}
	}
	return f, nil
}

// keepsName: the system cannot unlink an open file, so Discard removes it.
const keepsName = runtime.GOOS == "windows"

// Discard closes a file from Create (and removes it where it kept its
// name).
func Discard(f *os.File) {
	_ = f.Close()
	if keepsName {
		_ = os.Remove(f.Name())
	}
}
