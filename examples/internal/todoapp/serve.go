package todoapp

import (
	"net"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/server"
)

// Serve mounts srv's handlers under /sync on a loopback port, as the
// one-process demos do, and returns their URL and a function that stops
// serving.
func Serve(srv *server.Server) (url string, stop func() error, err error) {
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := handlers.NewHTTPServer("", r, nil)
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/sync", hs.Close, nil
}
