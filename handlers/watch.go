package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/protocol"
)

// watch holds a signed request until a version after its after= commits
// (server.Server.Watch), at most Config.WatchTimeout, and at most
// Config.MaxWatchers at once.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	// The bound is checked first: a request that would be refused costs
	// no database work.
	if n := h.watchers.Add(1); n > int64(h.cfg.MaxWatchers) {
		h.watchers.Add(-1)
		h.Error(w, r, fmt.Errorf("%w: %d watch requests are held, the most this server holds (retry later)", dbsync.ErrBusy, h.cfg.MaxWatchers))
		return
	}
	defer h.watchers.Add(-1)
	_, node, srv, err := h.prepare(w, r, "watch", h.cfg.MaxBodyBytes, false)
	if err != nil {
		h.Error(w, r, err)
		return
	}
	req, err := protocol.ParseWatch(r.URL.Query())
	if err != nil {
		h.Error(w, r, err)
		return
	}
	resp, err := srv.Watch(r.Context(), node, req, h.watchTimeout(r))
	if err != nil {
		h.Error(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// watchTimeout is Config.WatchTimeout, within 4/5 of the serving
// http.Server's WriteTimeout (the answer must leave before it).
func (h *handler) watchTimeout(r *http.Request) time.Duration {
	d := h.cfg.WatchTimeout
	if hs, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && hs.WriteTimeout > 0 {
		d = min(d, hs.WriteTimeout*4/5)
	}
	return d
}
