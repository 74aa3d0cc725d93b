package handlers

import (
	"io"
	"net/http"
	"time"
)

// ServerConfig sets the connection timeouts of [NewHTTPServer]. The zero
// value (or nil) is usable.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's line and headers.
	// Default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 60 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers. Default 64 KiB.
	MaxHeaderBytes int
}

// NewHTTPServer returns an http.Server for h (the handler of [New], or a
// router it is mounted in) that cuts slow and idle clients: headers must
// arrive within ReadHeaderTimeout, an idle keep-alive connection is closed
// after IdleTimeout, and headers are bounded by MaxHeaderBytes. The body
// and the response are bounded per request by the handler (Config.Deadlines):
// a body must arrive at a minimum rate and each write of a response must
// complete in time, so long pushes and streamed pulls are not cut while
// they progress. It sets no ReadTimeout or WriteTimeout, which would cut
// them.
//
//	hs := handlers.NewHTTPServer(":8080", r, nil)
//	err := hs.ListenAndServe() // or ListenAndServeTLS, Serve(ln)
func NewHTTPServer(addr string, h http.Handler, cfg *ServerConfig) *http.Server {
	c := ServerConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}

// Deadlines cut, per request, a client that sends its body too slowly or
// stops reading the response. They work in any http.Server (over HTTP/1.1
// and HTTP/2); a negative value turns one off.
type Deadlines struct {
	// BodyRate is the slowest a request body may arrive, in bytes per
	// second on average since the request started: the body's first n
	// bytes must have arrived BodyGrace + n/BodyRate after it started.
	// A 256 MiB push at the default rate may take 2¼ hours; a client
	// sending 1 byte a second is cut after BodyGrace. Default 32 KiB/s.
	BodyRate int64
	// BodyGrace is the time a body may lag behind BodyRate. Default 10 s.
	BodyGrace time.Duration
	// Write bounds each write of a response: a JSON answer, or one line
	// of a streamed pull or repair (extended as the stream progresses). A
	// client that stops reading is cut after it. Default 30 s.
	Write time.Duration
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

// deadlines is the middleware of Deadlines.
func deadlines(d Deadlines) func(http.Handler) http.Handler {
	d = d.withDefaults()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if d.BodyRate > 0 && d.BodyGrace > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
				r.Body = &rateBody{ReadCloser: r.Body, rc: rc, start: time.Now(), d: d}
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
}

func (b *rateBody) Read(p []byte) (int, error) {
	if !b.done {
		lag := time.Duration(float64(b.n) / float64(b.d.BodyRate) * float64(time.Second))
		_ = b.rc.SetReadDeadline(b.start.Add(b.d.BodyGrace + lag))
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
