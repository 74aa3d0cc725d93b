package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

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
				f, ferr := d.buf.Flush()
				d.discard()
				if err != nil || n != int64(tc.size) || !bytes.Equal(got, data) {
					t.Fatalf("downloaded %d bytes (%d read, %v), want %d the same", n, len(got), err, tc.size)
				}
				if ferr != nil || (f != nil) != tc.inFile {
					t.Fatalf("in a file: %v (%v), want %v", f != nil, ferr, tc.inFile)
				}
			}
			if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
				t.Fatalf("spool directory holds %v (%v)", left, err)
			}
		})
	}
}

// pacedStream is an answer whose bytes after the first at come only once
// release is closed (or, when release is nil, after pause or once gaveUp
// is closed, whichever comes first), then end with err (nil: io.EOF).
type pacedStream struct {
	data    []byte
	at      int
	release chan struct{}
	pause   time.Duration
	gaveUp  chan struct{} // closed when the apply gives up waiting (errWaitedLong)
	err     error
	off     int
	// timedOut: release never came (10 s).
	timedOut bool
}

func (s *pacedStream) Read(p []byte) (int, error) {
	if s.off == s.at && s.at < len(s.data) {
		if s.release != nil {
			select {
			case <-s.release:
			case <-time.After(10 * time.Second):
				s.timedOut = true
			}
		} else {
			// The stall lasts pause, or ends once the apply gave up
			// on it: nothing more happens in the stall after that.
			t := time.NewTimer(s.pause)
			select {
			case <-t.C:
			case <-s.gaveUp:
			}
			t.Stop()
		}
	}
	end := len(s.data)
	if s.off < s.at {
		end = s.at
	}
	if s.off >= len(s.data) {
		if s.err != nil {
			return 0, s.err
		}
		return 0, io.EOF
	}
	n := copy(p, s.data[s.off:end])
	s.off += n
	return n, nil
}

func (s *pacedStream) Close() error { return nil }

// TestDownloadApply checks that a small answer is applied once
// downloaded; that a large one is applied while it downloads, and again
// from the whole file when the download stalls past the bound, which
// counts from the apply's hold (a wait under way included) and not
// before (a PostgreSQL pull waiting for the merge lock); that a
// download failing during the apply fails it with ErrNetwork; that an
// apply failing for its own reason says so once the download ends; and
// that no spool file stays behind.
func TestDownloadApply(t *testing.T) {
	errApply := errors.New("apply refused")
	for _, tc := range []struct {
		name      string
		size      int
		stall     time.Duration // after the first part: 0 waits for the apply to read it
		hold      time.Duration // the apply calls hold: 0 at once, > 0 that long after it starts (reading meanwhile), < 0 never
		cut       bool
		applyErr  bool
		wantCalls int
		wantErr   error
	}{
		{name: "small", size: 1000, wantCalls: 1},
		{name: "at the bound", size: streamAfter, wantCalls: 1},
		{name: "large, applied while downloading", size: 3 * streamAfter, wantCalls: 1},
		{name: "large, stalled", size: 3 * streamAfter, stall: 8 * maxPullWait, wantCalls: 2},
		{name: "large, stalled, held during the wait", size: 3 * streamAfter, stall: 8 * maxPullWait, hold: 2 * maxPullWait, wantCalls: 2},
		// Without hold no bound: a bound counted from the apply's start
		// would give up about maxPullWait into the stall.
		{name: "large, stalled, never held", size: 3 * streamAfter, stall: 4 * maxPullWait, hold: -1, wantCalls: 1},
		{name: "large, cut", size: 3 * streamAfter, cut: true, wantCalls: 1, wantErr: dbsync.ErrNetwork},
		{name: "large, apply refused", size: 3 * streamAfter, applyErr: true, wantCalls: 1, wantErr: errApply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &Client{cfg: Config{SpoolDir: dir}, log: slog.New(slog.DiscardHandler)}
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte('a' + i%26)
			}
			first := min(tc.size, 2*streamAfter) // past the bound: spooled
			stream := &pacedStream{data: data, at: first, pause: tc.stall, gaveUp: make(chan struct{})}
			var gaveUp sync.Once
			if tc.stall == 0 {
				stream.release = make(chan struct{})
			}
			if tc.cut {
				stream.data, stream.err = data[:first+100], io.ErrUnexpectedEOF
			}
			var calls int
			var got []byte
			var released sync.Once
			n, err := c.downloadApply(context.Background(), stream, "pull", func(in *answer) error {
				calls++
				switch {
				case tc.hold == 0:
					in.hold()
				case tc.hold > 0:
					t := time.AfterFunc(tc.hold, in.hold)
					defer t.Stop()
				}
				got = got[:0]
				buf := make([]byte, 4096)
				for {
					k, err := in.Read(buf)
					got = append(got, buf[:k]...)
					if stream.release != nil && len(got) >= first {
						// The apply caught up with the download: only now
						// does the rest come (a download-then-apply would
						// never get here).
						released.Do(func() { close(stream.release) })
					}
					if tc.applyErr && len(got) >= first {
						return errApply
					}
					if errors.Is(err, errWaitedLong) {
						// Given up within the stall: the stall ends now
						// (it would only delay the second apply).
						gaveUp.Do(func() { close(stream.gaveUp) })
					}
					if in.received() < int64(len(got)) {
						return fmt.Errorf("received %d bytes, %d read", in.received(), len(got))
					}
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
				}
			})
			if stream.timedOut {
				t.Error("the apply did not read the answer while it downloaded")
			}
			if calls != tc.wantCalls {
				t.Errorf("apply called %d times, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("downloadApply: %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || n != int64(tc.size) || !bytes.Equal(got, data) {
				t.Fatalf("downloadApply: %d bytes, %v; applied %d bytes, want %d the same", n, err, len(got), tc.size)
			}
			if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
				t.Fatalf("spool directory holds %v (%v)", left, err)
			}
		})
	}
}
