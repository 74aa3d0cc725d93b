// Package httpclient is the client side of dbsync's HTTP, shared by
// client.HTTPTransport (a node calling its server) and peerhttp.Peer (a
// peer calling another): the headers of a signed request, sending it, and
// reading the answer (error answers turned into errors, JSON answers
// decoded). internal/httpx is the handler side.
package httpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// Signature is how a request is signed: the sender's identity under its
// header (protocol.HeaderNode for a node, peerhttp.HeaderPeer for a peer)
// and the signed timestamp, nonce and signature.
type Signature struct {
	SenderHeader string
	Sender       string
	Timestamp    int64 // Unix milliseconds
	Nonce        string
	Signature    string
	// Form, when not empty, is sent as protocol.HeaderSignatureForm.
	Form string
}

// SetHeaders sets the headers every dbsync request carries (the protocol
// version, the schema fingerprint and, when not empty, the announced
// schema tables) and, when sig is not nil, those of its signature.
func SetHeaders(h http.Header, schema, tables string, sig *Signature) {
	h.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
	h.Set(protocol.HeaderSchema, schema)
	if tables != "" {
		h.Set(protocol.HeaderTables, tables)
	}
	if sig == nil {
		return
	}
	h.Set(sig.SenderHeader, sig.Sender)
	h.Set(protocol.HeaderTimestamp, strconv.FormatInt(sig.Timestamp, 10))
	h.Set(protocol.HeaderNonce, sig.Nonce)
	h.Set(protocol.HeaderSignature, sig.Signature)
	if sig.Form != "" {
		h.Set(protocol.HeaderSignatureForm, sig.Form)
	}
}

// ResendReplayed calls send, which signs a request with a new nonce and
// sends it, and calls it once more when the answer is replayed
// (dbsync.ErrReplay): the request reached the server twice with one
// nonce, the first copy's answer lost. net/http's Transport resends by
// itself a GET whose kept-alive connection closed before its answer (a
// server process dying after the work, a proxy cutting the connection),
// and a proxy may resend any request. The nonce was the sender's own and
// fresh, so the copy is not an attacker's.
func ResendReplayed(ctx context.Context, send func() (*http.Response, error)) (*http.Response, error) {
	resp, err := send()
	if errors.Is(err, dbsync.ErrReplay) && ctx.Err() == nil {
		return send()
	}
	return resp, err
}

// Do sends req with hc and returns the response of a 2xx answer. A request
// that got no answer wraps dbsync.ErrNetwork (and the context's error once
// ctx is done); another answer is turned into an error by Error, with
// known.
func Do(ctx context.Context, hc *http.Client, req *http.Request, endpoint string, known func(code string) error) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s %s: %w", dbsync.ErrNetwork, req.Method, endpoint, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, Error(resp, known)
	}
	return resp, nil
}

// maxErrorBody bounds the error answers read.
const maxErrorBody = 1 << 20

// Error turns an error answer into an error: for a code known maps to a
// sentinel, an error wrapping it with the answer's message (without the
// sentinel's text it starts with);
// other codes as DetailError. A body that cannot be read wraps
// dbsync.ErrNetwork, one that is not an error answer dbsync.ErrBadResponse.
// known may be nil.
func Error(resp *http.Response, known func(code string) error) error {
	err := answerError(resp, known)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if secs, perr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("Retry-After")), 10, 64); perr == nil && secs > 0 {
			err = &retryAfterError{err: err, after: time.Duration(min(secs, maxRetryAfter)) * time.Second}
		}
	}
	return err
}

// maxRetryAfter bounds, in seconds, the wait a Retry-After header asks
// for that an error reports (dbsync.RetryAfter): an hour.
const maxRetryAfter = 3600

// retryAfterError is an error answer with the wait its Retry-After header
// asks for (dbsync.RetryAfter finds it).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.after }

// answerError is Error without the Retry-After header.
func answerError(resp *http.Response, known func(code string) error) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("%w: reading error response %d: %w", dbsync.ErrNetwork, resp.StatusCode, err)
	}
	if resp.StatusCode/100 == 3 {
		return fmt.Errorf("%w: status %d, a redirect to %q, not followed", dbsync.ErrBadResponse, resp.StatusCode, resp.Header.Get("Location"))
	}
	var body protocol.ErrorBody
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code == "" {
		return fmt.Errorf("%w: status %d with body %.200q", dbsync.ErrBadResponse, resp.StatusCode, raw)
	}
	if known != nil {
		if sentinel := known(body.Error.Code); sentinel != nil {
			// The message is the serving node's error text, which
			// starts with the sentinel's own: not twice.
			msg := body.Error.Message
			if msg == sentinel.Error() {
				return fmt.Errorf("%w", sentinel)
			}
			return fmt.Errorf("%w: %s", sentinel, strings.TrimPrefix(msg, sentinel.Error()+": "))
		}
	}
	return DetailError(resp.StatusCode, body.Error)
}

// DetailError turns an error answer's detail into an error:
// protocol.CodeUniqueConflict a *dbsync.UniqueConstraintError,
// protocol.CodeOutOfScope a *dbsync.ScopeError, protocol.CodeSchemaMismatch
// with its differences a *dbsync.SchemaError, protocol.CodeUnauthorized
// with the server's time a *dbsync.ClockError wrapping a
// *dbsync.ServerError, any other code a *dbsync.ServerError with status.
func DetailError(status int, d protocol.ErrorDetail) error {
	switch d.Code {
	case protocol.CodeUniqueConflict:
		return &dbsync.UniqueConstraintError{Entries: d.Entries}
	case protocol.CodeOutOfScope:
		return &dbsync.ScopeError{Entries: d.Rows}
	case protocol.CodeSchemaMismatch:
		if len(d.Schema) > 0 {
			return &dbsync.SchemaError{Differences: d.Schema, More: d.SchemaMore}
		}
	}
	err := &dbsync.ServerError{Status: status, Code: d.Code, Message: d.Message}
	if d.Code == protocol.CodeUnauthorized && d.ServerTime > 0 && d.ServerTimeSignature != "" {
		return &dbsync.ClockError{ServerTime: time.UnixMilli(d.ServerTime), Salt: d.ServerTimeSalt, Signature: d.ServerTimeSignature, Err: err}
	}
	return err
}

// ReadJSON decodes a whole JSON answer into v and closes its body. A body
// cut short (or whose connection failed) wraps dbsync.ErrNetwork, one that
// is not v's JSON dbsync.ErrBadResponse. limit bounds the bytes read (0:
// no bound).
func ReadJSON(resp *http.Response, v any, limit int64) error {
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if limit > 0 {
		r = io.LimitReader(r, limit)
	}
	body := &readErr{r: r}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: response cut short: %w", dbsync.ErrNetwork, err)
		}
		if body.err != nil { // the decoder's error is the connection's
			return fmt.Errorf("%w: reading the response: %w", dbsync.ErrNetwork, err)
		}
		return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	return nil
}

// readErr records the error of a read other than io.EOF.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
