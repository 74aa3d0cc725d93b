package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/go-dbsync/dbsync"
)

// cutReader returns its data, then err instead of io.EOF.
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = c.err
	}
	return n, err
}

func (c *cutReader) Close() error { return nil }

// TestDownload checks that an answer is downloaded whole into memory up to
// maxInMemory and into a temporary file beyond, and that a cut download
// leaves no file behind.
func TestDownload(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		cut    bool
		inFile bool
	}{
		{name: "empty", size: 0},
		{name: "small", size: 1000},
		{name: "at the bound", size: maxInMemory},
		{name: "beyond the bound", size: maxInMemory + 1, inFile: true},
		{name: "large", size: 3*maxInMemory + 12345, inFile: true},
		{name: "small, cut", size: 1000, cut: true},
		{name: "large, cut", size: 3 * maxInMemory, cut: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &Client{cfg: Config{SpoolDir: dir}}
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte('a' + i%26)
			}
			var stream io.ReadCloser = io.NopCloser(bytes.NewReader(data))
			if tc.cut {
				stream = &cutReader{r: bytes.NewReader(data), err: io.ErrUnexpectedEOF}
			}
			d, n, err := c.download(context.Background(), stream, "pull")
			if tc.cut {
				if !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("cut download: %v, want ErrNetwork", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(d)
				d.discard()
				if err != nil || n != int64(tc.size) || !bytes.Equal(got, data) {
					t.Fatalf("downloaded %d bytes (%d read, %v), want %d the same", n, len(got), err, tc.size)
				}
				if (d.file != nil) != tc.inFile {
					t.Fatalf("in a file: %v, want %v", d.file != nil, tc.inFile)
				}
			}
			if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
				t.Fatalf("spool directory holds %v (%v)", left, err)
			}
		})
	}
}
