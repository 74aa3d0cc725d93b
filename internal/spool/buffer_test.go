package spool_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/spool"
)

// TestBuffer: what is written reads back whole, from memory below the
// bound and from a file past it (one in Dir, unlinked), as often as asked,
// and Discard leaves nothing.
func TestBuffer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		memory int
		writes []string
		inFile bool
	}{
		{name: "empty", memory: 8},
		{name: "in memory", memory: 8, writes: []string{"abc", "defgh"}},
		{name: "spills", memory: 8, writes: []string{"abc", "defgh", "i"}, inFile: true},
		{name: "one large write", memory: 8, writes: []string{strings.Repeat("z", 100_000)}, inFile: true},
		{name: "default bound", writes: []string{strings.Repeat("y", spool.DefaultMemory)}},
		{name: "past the default bound", writes: []string{strings.Repeat("y", spool.DefaultMemory), "!"}, inFile: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := &spool.Buffer{Dir: dir, Memory: tc.memory}
			want := strings.Join(tc.writes, "")
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if b.Len() != int64(len(want)) {
				t.Fatalf("Len %d, want %d", b.Len(), len(want))
			}
			// Flush hands over the file, holding all written, once
			// there is one.
			f, err := b.Flush()
			if err != nil || (f != nil) != tc.inFile {
				t.Fatalf("Flush: file %v (%v), want %v", f != nil, err, tc.inFile)
			}
			if f != nil {
				got := make([]byte, len(want)+1)
				if n, _ := f.ReadAt(got, 0); string(got[:n]) != want {
					t.Fatalf("the flushed file holds %d bytes, want %d", n, len(want))
				}
			}
			for range 2 { // each reader starts at the beginning
				r, err := b.Reader()
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil || string(got) != want {
					t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(want))
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%d files visible in Dir, want the spool file unlinked", len(entries))
			}
			if inFile := dbtest.OpenIn(t, dir) > 0; inFile != tc.inFile {
				t.Errorf("held in a file: %v, want %v", inFile, tc.inFile)
			}
			b.Discard()
			if n := dbtest.OpenIn(t, dir); n != 0 {
				t.Errorf("%d spool files still open after Discard", n)
			}
			if _, err := b.Write([]byte("x")); err == nil {
				t.Error("Write after Discard succeeded")
			}
		})
	}
}

// TestRecords: records, empty ones included, come back in order and
// whole, from memory and past the bound from the file, then io.EOF; a
// record cut short is an error, not the end.
func TestRecords(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		memory  int
		records []string
	}{
		{name: "none", memory: 64},
		{name: "in memory", memory: 64, records: []string{"a", "", "bcd"}},
		{name: "spilled", memory: 16, records: []string{"first", strings.Repeat("m", 1000), "", "last"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &spool.Records{Buffer: spool.Buffer{Dir: t.TempDir(), Memory: tc.memory}}
			defer r.Discard()
			for _, rec := range tc.records {
				if err := r.Add([]byte(rec)); err != nil {
					t.Fatal(err)
				}
			}
			next, err := r.Iter()
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.records {
				got, err := next()
				if err != nil || !bytes.Equal(got, []byte(want)) {
					t.Fatalf("record %d: %q, %v; want %q", i, got, err, want)
				}
			}
			if got, err := next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last record: %q, %v; want io.EOF", got, err)
			}
		})
	}
	t.Run("cut short", func(t *testing.T) {
		t.Parallel()
		r := &spool.Records{}
		defer r.Discard()
		if err := r.Add([]byte("whole")); err != nil {
			t.Fatal(err)
		}
		// A length announcing more than follows.
		if _, err := r.Write([]byte{0, 0, 0, 9, 'x'}); err != nil {
			t.Fatal(err)
		}
		next, err := r.Iter()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := next(); err != nil || string(got) != "whole" {
			t.Fatalf("first record: %q, %v", got, err)
		}
		if _, err := next(); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("a record cut short: %v, want an error other than io.EOF", err)
		}
	})
}
