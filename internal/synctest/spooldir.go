package synctest

import (
	"os"
	"path/filepath"
	"testing"
)

// SpoolDirCase is a Config.SpoolDir a constructor must accept or refuse.
type SpoolDirCase struct {
	Name string
	Dir  string
	// Bad: the constructor refuses it, with an error naming
	// Config.SpoolDir; NotExist: that error wraps fs.ErrNotExist.
	Bad, NotExist bool
}

// SpoolDirCases returns the SpoolDirs a constructor must accept (empty:
// os.TempDir; an existing directory) and refuse (a missing directory, a
// file, a path under a file), made in t's temporary directory.
func SpoolDirCases(t testing.TB) []SpoolDirCase {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []SpoolDirCase{
		{Name: "empty", Dir: ""},
		{Name: "directory", Dir: dir},
		{Name: "missing", Dir: filepath.Join(dir, "missing"), Bad: true, NotExist: true},
		{Name: "file", Dir: file, Bad: true},
		{Name: "under a file", Dir: filepath.Join(file, "sub"), Bad: true},
	}
}
