package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// Responder writes a handler's error answers and logs its failures.
type Responder struct {
	Log *slog.Logger
}

// Recoverer answers a handler's panic with 500 internal.
func (h *Responder) Recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.Log.ErrorContext(r.Context(), "handlers: panic", slog.Any("panic", v), slog.String("request_id", middleware.GetReqID(r.Context())))
				h.Fail(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error (request "+middleware.GetReqID(r.Context())+")")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Status maps an error code to its HTTP status.
func Status(code string) int {
	switch code {
	case protocol.CodeBadRequest, protocol.CodeUnknownTable, protocol.CodeUnknownColumn, protocol.CodeProtocolVersion, protocol.CodeHeldKeysNeeded:
		return http.StatusBadRequest
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeBusy:
		return http.StatusServiceUnavailable
	case protocol.CodeTimeout:
		return http.StatusRequestTimeout
	case protocol.CodeUnauthorized, protocol.CodeReplay, protocol.CodeUnknownNode:
		return http.StatusUnauthorized
	case protocol.CodeForbidden, protocol.CodeOutOfScope:
		return http.StatusForbidden
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeResetRequired:
		return http.StatusGone
	case protocol.CodePushRejected, protocol.CodePullNeeded, protocol.CodeRepairNeeded, protocol.CodePushAbandoned,
		protocol.CodePushIncomplete, protocol.CodeForeignKey, protocol.CodeUniqueConflict, protocol.CodeSchemaMismatch:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Detail describes err for the wire. Internal errors are logged and
// reported without their text.
func (h *Responder) Detail(r *http.Request, err error) protocol.ErrorDetail {
	code := dbsync.Code(err)
	if code == protocol.CodeInternal && dialect.IsBusy(err) {
		// Another writer held SQLite's write lock past the busy timeout,
		// or PostgreSQL's lock_timeout or statement_timeout cut a
		// statement: nothing was written; retry later, as when a budget
		// is in use.
		h.Log.WarnContext(r.Context(), "handlers: database busy", slog.String("error", err.Error()), slog.String("path", r.URL.Path))
		err = fmt.Errorf("%w: the database is busy (a lock or a timeout); retry later", dbsync.ErrBusy)
		code = protocol.CodeBusy
	}
	if code == protocol.CodeInternal && dialect.IsUnavailable(err) && r.Context().Err() == nil {
		// PostgreSQL restarted or failed over, a proxy dropped the
		// connection, or none can be made: a transaction under way was
		// rolled back, unless the connection was lost in its COMMIT
		// (then it may have committed: a push sent again is answered
		// with its version, as any push that got a 5xx).
		h.Log.WarnContext(r.Context(), "handlers: database unavailable", slog.String("error", err.Error()), slog.String("path", r.URL.Path))
		err = fmt.Errorf("%w: the server lost its connection to the database or could not make one; retry later", dbsync.ErrBusy)
		code = protocol.CodeBusy
	}
	d := protocol.ErrorDetail{Code: code, Message: err.Error()}
	var ce *dbsync.ClockError
	if errors.As(err, &ce) {
		d.ServerTime, d.ServerTimeSalt, d.ServerTimeSignature = ce.ServerTime.UnixMilli(), ce.Salt, ce.Signature
	}
	switch {
	case code == protocol.CodeInternal:
		id := middleware.GetReqID(r.Context())
		if !errors.Is(err, context.Canceled) {
			h.Log.ErrorContext(r.Context(), "handlers: internal error", slog.String("error", err.Error()), slog.String("request_id", id), slog.String("path", r.URL.Path))
		}
		d.Message = "internal error (request " + id + ")"
		var ve *dbsync.ValueError
		if errors.As(err, &ve) {
			// A row of this side's own that dbsync cannot carry (a NaN, a
			// time outside years 1-9999): say which, or the other side
			// could never tell why its syncs fail.
			d.Message = ve.Error() + " (request " + id + ")"
		}
	case code == protocol.CodePullNeeded:
		d.PullNeeded = true
	case code == protocol.CodeUniqueConflict:
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) {
			d.Entries = uc.Entries
		}
	case code == protocol.CodeOutOfScope:
		var se *dbsync.ScopeError
		if errors.As(err, &se) {
			d.Rows = se.Entries
		}
	case code == protocol.CodeSchemaMismatch:
		var se *dbsync.SchemaError
		if errors.As(err, &se) {
			d.Schema, d.SchemaMore = se.Differences, se.More
		}
	}
	if code != protocol.CodeInternal {
		h.Log.InfoContext(r.Context(), "handlers: request refused", slog.String("code", code), slog.String("error", err.Error()), slog.String("path", r.URL.Path))
	}
	return d
}

// Error answers err with its code and status (Retry-After on busy).
func (h *Responder) Error(w http.ResponseWriter, r *http.Request, err error) {
	d := h.Detail(r, err)
	if d.Code == protocol.CodeBusy {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	WriteJSON(w, Status(d.Code), protocol.ErrorBody{Error: d})
}

// Fail answers with the given status, code and message.
func (h *Responder) Fail(w http.ResponseWriter, _ *http.Request, status int, code, msg string) {
	WriteJSON(w, status, protocol.ErrorBody{Error: protocol.ErrorDetail{Code: code, Message: msg}})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Unrouted answers requests for unknown paths (404) and methods (405) of
// router r with dbsync error bodies.
func (h *Responder) Unrouted(r chi.Router) {
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		h.Fail(w, r, http.StatusNotFound, protocol.CodeBadRequest, "no such endpoint: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		h.Fail(w, r, http.StatusMethodNotAllowed, protocol.CodeBadRequest, r.Method+" is not allowed here")
	})
}
