package stream

import (
	"errors"
	"testing"
)

// TestPayloadFits: WriteFrame refuses a payload longer than a frame's
// 4-byte length can say (its type byte included), before writing
// anything; before, the length wrapped: a payload of 4 GiB was framed as
// 0 bytes, the rest read as frames. Checked on the sizes alone: a 4 GiB
// payload would take 4 GiB of memory.
func TestPayloadFits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n  int64
		ok bool
	}{
		{0, true},
		{1 << 20, true},
		{1<<32 - 2, true},
		{1<<32 - 1, false},
		{1 << 32, false},
		{1 << 40, false},
	} {
		if err := payloadFits(c.n); (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrFrame)) {
			t.Errorf("payloadFits(%d) = %v, want ok %v (else ErrFrame)", c.n, err, c.ok)
		}
	}
}
