package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Frame types.
const (
	frameHello  byte = 'H'
	frameAuth   byte = 'A'
	frameCursor byte = 'C'
	frameBatch  byte = 'B'
	frameDone   byte = 'D'
	frameCommit byte = 'K'
	frameError  byte = 'E'
)

// DefaultMaxFrame bounds one frame (64 MiB): a peer cannot make this side
// allocate more.
const DefaultMaxFrame = 64 << 20

// ErrFrame reports a malformed frame.
var ErrFrame = errors.New("stream: malformed frame")

// A frame on the wire: a 4-byte big-endian length n, then n bytes: one
// type byte and a payload. The payload is JSON; after each end's AUTH
// frame, every frame it sends (errors included) ends with a 32-byte
// HMAC-SHA256, under the session's key for that direction, of the frame's
// sequence number in that direction (8 bytes, big-endian, from 0), its
// type byte and its JSON. WriteFrame and ReadFrame move frames; the
// session seals and checks them.

// frameSizeError is a frame over the reader's limit (ErrFrame): only its
// length was read.
type frameSizeError struct {
	size uint32
	max  int
}

func (e *frameSizeError) Error() string {
	return fmt.Sprintf("%s: %d bytes, more than %d", ErrFrame, e.size, e.max)
}

func (e *frameSizeError) Unwrap() error { return ErrFrame }

// maxPayload is the longest payload a frame's length (4 bytes, its type
// included) can say.
const maxPayload = math.MaxUint32 - 1

// WriteFrame writes one frame. A payload longer than a frame's length can
// say (4 GiB less 2 bytes) is ErrFrame, nothing written.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if err := payloadFits(int64(len(payload))); err != nil {
		return err
	}
	var head [5]byte
	binary.BigEndian.PutUint32(head[:4], uint32(len(payload)+1))
	head[4] = typ
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// payloadFits refuses (ErrFrame) a payload of n bytes longer than a
// frame's length can say: written, the length would wrap (a payload of 4
// GiB framed as 0 bytes), and the rest would be read as frames.
func payloadFits(n int64) error {
	if n > maxPayload {
		return fmt.Errorf("%w: a payload of %d bytes, more than a frame holds (%d)", ErrFrame, n, int64(maxPayload))
	}
	return nil
}

// ReadFrame reads one frame of at most max bytes.
func ReadFrame(r io.Reader, max int) (typ byte, payload []byte, err error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 {
		return 0, nil, fmt.Errorf("%w: empty frame", ErrFrame)
	}
	if int64(n) > int64(max) {
		return 0, nil, &frameSizeError{size: n, max: max}
	}
	// Held as it arrives, not allocated from the length alone: a peer
	// that announces a large frame and sends nothing costs nothing.
	var b bytes.Buffer
	b.Grow(int(min(n, 64<<10)))
	if _, err := io.CopyN(&b, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	buf := b.Bytes()
	switch buf[0] {
	case frameHello, frameAuth, frameCursor, frameBatch, frameDone, frameCommit, frameError:
	default:
		return 0, nil, fmt.Errorf("%w: unknown type %q", ErrFrame, buf[0])
	}
	return buf[0], buf[1:], nil
}
