package client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpclient"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/protocol"
)

// maxInMemory bounds an answer download keeps in memory; a bigger one
// goes to a temporary file (Config.SpoolDir).
const maxInMemory = 1 << 20

// downloaded is a downloaded answer: in memory when it is small, else in
// a temporary file. It can be read again after a Seek to the start (a
// reset reads it twice). Discard it after use.
type downloaded struct {
	io.ReadSeeker
	file *os.File // nil: in memory
}

func (d *downloaded) discard() {
	if d.file != nil {
		spool.Discard(d.file)
	}
}

// download reads a streamed answer (a pull's or a repair's) whole,
// reporting progress, and closes it: into memory up to maxInMemory, then
// on into a temporary file, so memory stays bounded and the transaction
// applying it does not wait on the network.
func (c *Client) download(ctx context.Context, stream io.ReadCloser, op string) (*downloaded, int64, error) {
	defer stream.Close()
	var mem bytes.Buffer
	var f *os.File
	var w *bufio.Writer
	fail := func(err error) (*downloaded, int64, error) {
		if f != nil {
			spool.Discard(f)
		}
		return nil, 0, err
	}
	buf := make([]byte, 1<<16)
	var n int64
	last := time.Now()
	for {
		k, rerr := stream.Read(buf)
		if k > 0 {
			if f == nil && mem.Len()+k > maxInMemory {
				var err error
				if f, err = spool.Create(c.cfg.SpoolDir, "dbsync-"+op+"-*.ndjson"); err != nil {
					return nil, 0, fmt.Errorf("client: spool file: %w", err)
				}
				w = bufio.NewWriterSize(f, 1<<16)
				if _, err := w.Write(mem.Bytes()); err != nil {
					return fail(fmt.Errorf("client: spool: %w", err))
				}
				mem = bytes.Buffer{}
			}
			if f == nil {
				mem.Write(buf[:k])
			} else if _, err := w.Write(buf[:k]); err != nil {
				return fail(fmt.Errorf("client: spool: %w", err))
			}
			n += int64(k)
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return fail(fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err()))
			}
			return fail(fmt.Errorf("%w: download cut short after %d bytes: %w", dbsync.ErrNetwork, n, rerr))
		}
	}
	c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
	if f == nil {
		return &downloaded{ReadSeeker: bytes.NewReader(mem.Bytes())}, n, nil
	}
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("client: spool: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return &downloaded{ReadSeeker: f, file: f}, n, nil
}

// messages decodes the lines of a spooled stream one at a time. The first
// must be a header; a stream without its end line is an error.
type messages struct {
	r     *bufio.Reader
	ahead chan parsedLine // with readAhead: the lines, parsed ahead
}

type parsedLine struct {
	msg *protocol.Message
	err error
}

// readAhead reads and parses the next line on another goroutine while the
// caller handles the last one (a line at most is held ahead). The caller
// must call the returned stop before it stops reading, and before the
// stream is closed.
func (m *messages) readAhead() (stop func()) {
	ahead := make(chan parsedLine, 1)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		defer close(ahead)
		for {
			msg, err := m.read()
			select {
			case ahead <- parsedLine{msg, err}:
			case <-done:
				return
			}
			if err != nil || msg.Type == protocol.MsgEnd {
				return
			}
		}
	}()
	m.ahead = ahead
	return func() {
		close(done)
		<-finished
	}
}

func newMessages(r io.Reader) *messages {
	return &messages{r: bufio.NewReaderSize(r, 1<<16)}
}

// header reads the first line of op's stream, which must be a header
// naming the server's newest version.
func (m *messages) header(op string) (*protocol.Message, error) {
	head, err := m.next()
	if err != nil {
		return nil, err
	}
	if head.Type != protocol.MsgHeader || head.LatestVersionID == nil {
		return nil, fmt.Errorf("%w: %s stream does not start with a header", dbsync.ErrBadResponse, op)
	}
	return head, nil
}

// next reads the next line. An error line becomes the error it reports.
func (m *messages) next() (*protocol.Message, error) {
	if m.ahead != nil {
		l, ok := <-m.ahead
		if !ok {
			return nil, fmt.Errorf("%w: read past the end line", dbsync.ErrBadResponse)
		}
		return l.msg, l.err
	}
	return m.read()
}

// read reads and parses the next line.
func (m *messages) read() (*protocol.Message, error) {
	var line []byte
	for len(bytes.TrimSpace(line)) == 0 {
		var err error
		line, err = m.r.ReadBytes('\n')
		if err == io.EOF {
			if len(bytes.TrimSpace(line)) == 0 {
				return nil, fmt.Errorf("%w: the stream ended without its end line", dbsync.ErrNetwork)
			}
			// A last line without its newline: the stream was cut.
			return nil, fmt.Errorf("%w: the stream was cut inside a line", dbsync.ErrNetwork)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading the stream: %w", dbsync.ErrNetwork, err)
		}
	}
	msg, err := protocol.ParseMessage(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	if msg.Type == protocol.MsgError {
		if msg.Error == nil {
			return nil, fmt.Errorf("%w: error line without an error", dbsync.ErrBadResponse)
		}
		return nil, httpclient.DetailError(http.StatusOK, *msg.Error)
	}
	return msg, nil
}
