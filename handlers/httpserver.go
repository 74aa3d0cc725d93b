package handlers

import (
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
	// sending 1 byte a second is cut after BodyGrace. A body the handler
	// refuses unread (the server reads up to 256 KiB of it before it
	// answers) is held to it too. Default 32 KiB/s.
	BodyRate int64
	// BodyGrace is the time a body may lag behind BodyRate. Default 10 s.
	BodyGrace time.Duration
	// Write bounds each write of a response: a JSON answer, or one line
	// of a streamed pull or repair (extended as the stream progresses). A
	// client that stops reading is cut after it. Default 30 s.
	Write time.Duration
}
