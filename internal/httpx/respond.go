package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
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
				h.Fail(w, r, http.StatusInternalServerError, dbsync.CodeInternal, "internal error (request "+middleware.GetReqID(r.Context())+")")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Status maps an error code to its HTTP status.
func Status(code string) int {
	switch code {
	case dbsync.CodeBadRequest, dbsync.CodeUnknownTable, dbsync.CodeUnknownColumn, dbsync.CodeProtocolVersion:
		return http.StatusBadRequest
	case dbsync.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case dbsync.CodeBusy:
		return http.StatusServiceUnavailable
	case dbsync.CodeTimeout:
		return http.StatusRequestTimeout
	case dbsync.CodeUnauthorized, dbsync.CodeReplay, dbsync.CodeUnknownNode:
		return http.StatusUnauthorized
	case dbsync.CodeForbidden:
		return http.StatusForbidden
	case dbsync.CodeRateLimited:
		return http.StatusTooManyRequests
	case dbsync.CodePushRejected, dbsync.CodePullNeeded, dbsync.CodeRepairNeeded, dbsync.CodePushAbandoned,
		dbsync.CodeUniqueConflict, dbsync.CodeSchemaMismatch:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Detail describes err for the wire. Internal errors are logged and
// reported without their text.
func (h *Responder) Detail(r *http.Request, err error) dbsync.ErrorDetail {
	code := dbsync.Code(err)
	d := dbsync.ErrorDetail{Code: code, Message: err.Error()}
	switch {
	case code == dbsync.CodeInternal:
		id := middleware.GetReqID(r.Context())
		if !errors.Is(err, context.Canceled) {
			h.Log.ErrorContext(r.Context(), "handlers: internal error", slog.String("error", err.Error()), slog.String("request_id", id), slog.String("path", r.URL.Path))
		}
		d.Message = "internal error (request " + id + ")"
	case code == dbsync.CodePullNeeded:
		d.PullNeeded = true
	case code == dbsync.CodeUniqueConflict:
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) {
			d.Entries = uc.Entries
		}
	}
	if code != dbsync.CodeInternal {
		h.Log.InfoContext(r.Context(), "handlers: request refused", slog.String("code", code), slog.String("error", err.Error()), slog.String("path", r.URL.Path))
	}
	return d
}

// Error answers err with its code and status (Retry-After on busy).
func (h *Responder) Error(w http.ResponseWriter, r *http.Request, err error) {
	d := h.Detail(r, err)
	if d.Code == dbsync.CodeBusy {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	WriteJSON(w, Status(d.Code), dbsync.ErrorBody{Error: d})
}

// Fail answers with the given status, code and message.
func (h *Responder) Fail(w http.ResponseWriter, _ *http.Request, status int, code, msg string) {
	WriteJSON(w, status, dbsync.ErrorBody{Error: dbsync.ErrorDetail{Code: code, Message: msg}})
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
		h.Fail(w, r, http.StatusNotFound, dbsync.CodeBadRequest, "no such endpoint: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		h.Fail(w, r, http.StatusMethodNotAllowed, dbsync.CodeBadRequest, r.Method+" is not allowed here")
	})
}
