package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpx"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// watch holds a signed request until a version after its after= commits
// (server.Server.Watch), at most Config.WatchTimeout, and at most
// Config.MaxWatchers at once, at most Config.MaxWatchersPerNode of them of
// one node. With pull=1 the answer to a new version is
// the pull's stream (server.Server.WatchPull).
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	// The bound is checked first: a request that would be refused costs
	// no database work.
	if n := h.watchers.Add(1); n > int64(h.cfg.MaxWatchers) {
		h.watchers.Add(-1)
		h.Error(w, r, fmt.Errorf("%w: %d watch requests are held, the most this server holds (retry later)", dbsync.ErrBusy, h.cfg.MaxWatchers))
		return
	}
	defer h.watchers.Add(-1)
	_, node, srv, done, err := h.prepare(w, r, "watch", h.cfg.MaxBodyBytes, false)
	defer done()
	if err != nil {
		h.Error(w, r, err)
		return
	}
	req, err := protocol.ParseWatch(r.URL.Query())
	if err != nil {
		h.Error(w, r, err)
		return
	}
	if !h.nodeWatchers.take(node) {
		h.Error(w, r, fmt.Errorf("%w: node %d has %d watch requests held, the most this server holds for a node (retry later)", dbsync.ErrBusy, node, h.cfg.MaxWatchersPerNode))
		return
	}
	defer h.nodeWatchers.give(node)
	if req.Pull {
		// Answered with the pull's stream when it is carried (pull=1),
		// else as without it.
		var resp *protocol.WatchResponse
		pulled := false
		h.stream(w, r, func(emit server.Emit) (err error) {
			resp, pulled, err = srv.WatchPull(r.Context(), node, req, h.watchTimeout(r), emit)
			return err
		})
		if resp != nil && !pulled {
			httpx.WriteJSON(w, http.StatusOK, resp)
		}
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
