package httpx

import (
	"io"
	"net/http"
	"time"
)

// Deadlines cut, per request, a client that sends its body too slowly or
// stops reading the response (handlers.Deadlines documents the fields). A
// zero field takes its default, a negative one turns it off.
type Deadlines struct {
	BodyRate  int64
	BodyGrace time.Duration
	Write     time.Duration
}

func (d Deadlines) withDefaults() Deadlines {
	if d.BodyRate == 0 {
		d.BodyRate = 32 << 10
	}
	if d.BodyGrace == 0 {
		d.BodyGrace = 10 * time.Second
	}
	if d.Write == 0 {
		d.Write = 30 * time.Second
	}
	return d
}

// Middleware returns the middleware of d.
func (d Deadlines) Middleware() func(http.Handler) http.Handler {
	d = d.withDefaults()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if d.BodyRate > 0 && d.BodyGrace > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
				b := &rateBody{ReadCloser: r.Body, rc: rc, start: time.Now(), d: d}
				// A body the handler does not read (a request refused for
				// its headers) is read by the server before it answers,
				// up to 256 KiB, to reuse the connection: it must arrive
				// in time too.
				_ = rc.SetReadDeadline(b.deadline(max(r.ContentLength, 0)))
				r.Body = b
			}
			if d.Write > 0 {
				w = &deadlineWriter{ResponseWriter: w, rc: rc, d: d.Write}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// rateBody sets the connection's read deadline before each read of the
// body from the bytes read so far, and clears it at the end of the body: a
// deadline left behind would cut the connection (and cancel the request's
// context) while the handler works or streams. After a failed read the
// deadline stays: the server must not wait for the rest of the body to
// reuse the connection.
type rateBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	d     Deadlines
	n     int64
	done  bool
	// until, when set (Bodies.Read), bounds every deadline: the request's
	// timestamp window closes then.
	until time.Time
}

// deadline is when the body's first n bytes must have arrived.
func (b *rateBody) deadline(n int64) time.Time {
	lag := time.Duration(float64(n) / float64(b.d.BodyRate) * float64(time.Second))
	d := b.start.Add(b.d.BodyGrace + lag)
	if !b.until.IsZero() && b.until.Before(d) {
		return b.until
	}
	return d
}

func (b *rateBody) Read(p []byte) (int, error) {
	if !b.done {
		_ = b.rc.SetReadDeadline(b.deadline(b.n))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineWriter gives each write of the response its own deadline.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(status int) {
	w.extend()
	w.ResponseWriter.WriteHeader(status)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// FlushError lets http.ResponseController flush through the wrapper.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

// Unwrap gives http.ResponseController the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
