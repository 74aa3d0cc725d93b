package spool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// DefaultMemory is what a Buffer keeps in memory when its Memory is 0.
const DefaultMemory = 1 << 20

// Buffer holds what is written to it in memory up to Memory bytes, and in
// a temporary file (Create, in Dir) once it grows past them: its memory
// stays bounded whatever is written. Discard it after use.
type Buffer struct {
	// Dir is where the file goes ("": os.TempDir()).
	Dir string
	// Memory is how many bytes stay in memory (0: DefaultMemory).
	Memory int
	// Pattern names the file, as os.CreateTemp's pattern ("":
	// "dbsync-spool-*").
	Pattern string

	mem  []byte
	file *os.File
	w    *bufio.Writer
	size int64
	err  error // the first failure, returned by every later call
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	limit := b.Memory
	if limit <= 0 {
		limit = DefaultMemory
	}
	if b.file == nil && len(b.mem)+len(p) > limit {
		pattern := b.Pattern
		if pattern == "" {
			pattern = "dbsync-spool-*"
		}
		f, err := Create(b.Dir, pattern)
		if err != nil {
			b.err = fmt.Errorf("spool: %w", err)
			return 0, b.err
		}
		b.file, b.w = f, bufio.NewWriterSize(f, 64<<10)
		if _, err := b.w.Write(b.mem); err != nil {
			b.err = fmt.Errorf("spool: %w", err)
			return 0, b.err
		}
		b.mem = nil
	}
	if b.file == nil {
		b.mem = append(b.mem, p...)
	} else if _, err := b.w.Write(p); err != nil {
		b.err = fmt.Errorf("spool: %w", err)
		return 0, b.err
	}
	b.size += int64(len(p))
	return len(p), nil
}

// Flush writes what is buffered to the file and returns it, or nil while
// everything written is in memory. The file holds Len bytes from its
// start; read it with ReadAt, as a reader of a file still growing would.
func (b *Buffer) Flush() (*os.File, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.file == nil {
		return nil, nil
	}
	if err := b.w.Flush(); err != nil {
		b.err = fmt.Errorf("spool: %w", err)
		return nil, b.err
	}
	return b.file, nil
}

// Len returns the number of bytes written.
func (b *Buffer) Len() int64 { return b.size }

// Reader returns a new reader of everything written, from the start. Each
// reader is independent (an HTTP request body sent again reads it anew);
// they are valid until Discard. Write nothing after it.
func (b *Buffer) Reader() (*io.SectionReader, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.file == nil {
		return io.NewSectionReader(bytes.NewReader(b.mem), 0, int64(len(b.mem))), nil
	}
	f, err := b.Flush()
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f, 0, b.size), nil
}

// Discard releases the memory and removes the file.
func (b *Buffer) Discard() {
	if b.file != nil {
		Discard(b.file)
		b.file, b.w = nil, nil
	}
	b.mem = nil
	if b.err == nil {
		b.err = errors.New("spool: buffer discarded")
	}
}

// Records holds a sequence of byte strings in a Buffer (each written after
// its length), read back in order by Iter.
type Records struct {
	Buffer
}

// Add appends a record of less than 4 GiB.
func (r *Records) Add(p []byte) error {
	if int64(len(p)) > 1<<32-1 {
		return fmt.Errorf("spool: a record of %d bytes", len(p))
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(p)))
	if _, err := r.Write(n[:]); err != nil {
		return err
	}
	_, err := r.Write(p)
	return err
}

// Iter returns a function returning the records in the order they were
// added, then io.EOF. Add nothing after it.
func (r *Records) Iter() (func() ([]byte, error), error) {
	sr, err := r.Reader()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(sr, 64<<10)
	return func() ([]byte, error) {
		var n [4]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("spool: %w", err)
		}
		p := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		return p, nil
	}, nil
}
