package synctest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// GenBody is a request body of a given size, generated as it is read
// (nothing is held in memory), that counts what was read. With a hold, it
// blocks once that many bytes are read (Held is closed) until Release.
type GenBody struct {
	left    int64
	hold    int64
	read    atomic.Int64
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

// NewGenBody returns a body of size bytes that blocks after hold bytes
// (0: never).
func NewGenBody(size, hold int64) *GenBody {
	return &GenBody{left: size, hold: hold, held: make(chan struct{}), release: make(chan struct{})}
}

var genChunk = []byte(strings.Repeat("0123456789abcdef", 4096))

// Read implements io.Reader.
func (b *GenBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.hold > 0 {
		r := b.read.Load()
		if r == b.hold {
			close(b.held)
			<-b.release
			b.hold = 0
		} else if int64(len(p)) > b.hold-r {
			p = p[:b.hold-r]
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n := 0
	for n < len(p) {
		n += copy(p[n:], genChunk)
	}
	b.left -= int64(n)
	b.read.Add(int64(n))
	return n, nil
}

// BytesRead returns how many bytes were read so far.
func (b *GenBody) BytesRead() int64 { return b.read.Load() }

// Held is closed once the body blocks at its hold.
func (b *GenBody) Held() <-chan struct{} { return b.held }

// Release lets a held body go on (again: nothing).
func (b *GenBody) Release() { b.once.Do(func() { close(b.release) }) }

// Stalled sends req, whose body must be body (a GenBody holding its
// bytes), and checks that the server answers want within wait once body
// holds: a request whose body stalls past its timestamp window is cut
// then, not at the rate deadline. The request ends with the test.
func Stalled(t testing.TB, req *http.Request, body *GenBody, want int, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(req.Context())
	answered := make(chan int, 1)
	go func() {
		status := -1
		if resp, err := http.DefaultClient.Do(req.WithContext(ctx)); err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		answered <- status
	}()
	defer func() { cancel(); body.Release(); <-answered }()
	<-body.Held()
	select {
	case status := <-answered:
		answered <- status // (for the deferred wait)
		if status != want {
			t.Errorf("a body stalled past its window: %d, want %d", status, want)
		}
	case <-time.After(wait):
		t.Errorf("a body stalled past its window was not answered in %s", wait)
	}
}
