package spool

import (
	"io"
	"os"
	"testing"
)

// TestCreateNeverNamed: on a system with unnamed files, a spool file is
// never seen in its directory, not even for the moment between its
// creation and its unlinking (a process killed then would leave it behind).
// Another goroutine lists the directory while files are created, written
// and discarded; every file reads back what was written, and the
// directory itself survives Discard.
func TestCreateNeverNamed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if f := createUnnamed(dir); f == nil {
		t.Skip("no unnamed files here: Create names the file and unlinks it at once")
	} else {
		_ = f.Close()
	}
	const files = 1000
	done := make(chan error, 1)
	go func() {
		for i := range files {
			f, err := Create(dir, "dbsync-test-*")
			if err != nil {
				done <- err
				return
			}
			want := []byte{byte(i), byte(i >> 8)}
			if _, err := f.Write(want); err != nil {
				done <- err
				return
			}
			got := make([]byte, 2)
			if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
				done <- err
				return
			}
			if string(got) != string(want) {
				done <- io.ErrUnexpectedEOF
				return
			}
			Discard(f)
		}
		done <- nil
	}()
	seen := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) > 0 {
			seen++
		}
	}
	if seen > 0 {
		t.Fatalf("spool files had a name in %s %d times while they were created", dir, seen)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("the directory is gone after Discard: %v", err)
	}
}
