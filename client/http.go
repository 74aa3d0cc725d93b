package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/httpclient"
	"github.com/go-dbsync/dbsync/protocol"
)

// HTTPTransport is the [Transport] of docs/protocol.md: HTTP requests to a
// server's handlers, signed with the node's secret, and error answers
// turned into errors (*dbsync.UniqueConstraintError, *dbsync.ScopeError,
// *dbsync.SchemaError for the codes that carry rows or differences,
// *dbsync.ServerError for the others; no answer: dbsync.ErrNetwork). It is
// safe for concurrent use.
type HTTPTransport struct {
	base *url.URL
	http *http.Client
	// stall bounds each read of a JSON answer's body (0: none); streams
	// are the Client's to bound (Config.StallTimeout).
	stall time.Duration
	// answer bounds the reads of a JSON answer's body together (0: none;
	// Config.AnswerTimeout).
	answer time.Duration
	// clock is how far, in nanoseconds, the server's clock is ahead of the
	// node's (Call.Time), as a refusal for a timestamp outside the
	// server's window last said (ClockOffset); the timestamps signed are
	// corrected by it.
	clock atomic.Int64
}

// ClockOffset returns how far the server's clock is ahead of the node's
// (negative: behind), as the server last said when it refused a request
// of this transport for its timestamp (a *dbsync.ClockError); 0 until
// then. The transport adds it to the timestamps it signs: a node whose
// clock is off by more than the server's window (server.Config.ClockSkew)
// syncs all the same, at the cost of one refused request a process (and
// one more each time its clock jumps). An application may show it: a
// device whose clock is wrong.
func (h *HTTPTransport) ClockOffset() time.Duration { return time.Duration(h.clock.Load()) }

// NewHTTPTransport returns a transport to the handlers mounted at rawURL,
// e.g. "https://example.com/sync", sending with hc. A nil hc is a client
// with 30 s dial, TLS handshake and response-header timeouts and no
// overall timeout
// (pulls and repairs stream); pass contexts with deadlines to bound a call.
// Each read of a JSON answer's body waits at most 60 s for bytes
// (Config.StallTimeout, when the Client creates its transport): past it
// the call fails with dbsync.ErrNetwork.
// It follows redirects on the same host only (not from https to http):
// another is an error wrapping dbsync.ErrBadResponse.
func NewHTTPTransport(rawURL string, hc *http.Client) (*HTTPTransport, error) {
	if rawURL == "" {
		return nil, errors.New("client: Config.URL is required")
	}
	base, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("client: Config.URL %q is not an http(s) URL", rawURL)
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		}, CheckRedirect: sameServer}
	}
	return &HTTPTransport{base: base, http: hc, stall: defaultStallTimeout}, nil
}

// sameServer is the default client's redirect policy: it follows a
// redirect on the same host and port (https not down to http), as
// http.Client does, and no other: the node's signed request and its rows
// would go to a server it was never configured for. The redirect not
// followed is the answer (httpclient.Error: dbsync.ErrBadResponse).
func sameServer(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// Register implements [Transport].
func (h *HTTPTransport) Register(ctx context.Context, call *Call, credentials string, req *protocol.RegisterRequest) (*protocol.RegisterResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: register: %w", err)
	}
	return doJSON[protocol.RegisterResponse](ctx, h, call, &request{method: http.MethodPost, endpoint: "register", body: body, authorization: credentials})
}

// Push implements [Transport].
func (h *HTTPTransport) Push(ctx context.Context, call *Call, body []byte) (*protocol.PushResponse, error) {
	return doJSON[protocol.PushResponse](ctx, h, call, &request{method: http.MethodPost, endpoint: "push", body: body, signed: true})
}

// Pull implements [Transport].
func (h *HTTPTransport) Pull(ctx context.Context, call *Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := h.do(ctx, call, &request{method: http.MethodPost, endpoint: "pull", body: body, signed: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Repair implements [Transport].
func (h *HTTPTransport) Repair(ctx context.Context, call *Call) (io.ReadCloser, error) {
	resp, err := h.do(ctx, call, &request{method: http.MethodGet, endpoint: "repair", signed: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Query implements [Transport].
func (h *HTTPTransport) Query(ctx context.Context, call *Call, req *protocol.QueryRequest) (*protocol.QueryResponse, error) {
	return doJSON[protocol.QueryResponse](ctx, h, call, &request{method: http.MethodGet, endpoint: "query", query: req.Values(), signed: true})
}

// doJSON makes the call r and decodes its JSON answer into a new T.
func doJSON[T any](ctx context.Context, h *HTTPTransport, call *Call, r *request) (*T, error) {
	resp, err := h.do(ctx, call, r)
	if err != nil {
		return nil, err
	}
	var out T
	if err := h.readJSON(resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// request is one HTTP call to the server.
type request struct {
	method   string
	endpoint string
	query    url.Values
	body     []byte
	signed   bool // false: unsigned (register)
	// authorization is sent as the Authorization header (register).
	authorization string
}

// do sends a request and returns the response of a 2xx answer; other
// answers become errors (httpclient.Error). A signed request answered
// replayed is signed again with a new nonce and sent once more
// (httpclient.ResendReplayed): a push or commit applied by the first copy
// is answered duplicate. One refused for its timestamp with the server's
// time signed for this node and request (a *dbsync.ClockError that
// protocol.VerifyClock accepts) is signed again with the timestamp
// corrected (ClockOffset) and sent once more: the server refused it
// before any work.
func (h *HTTPTransport) do(ctx context.Context, call *Call, r *request) (*http.Response, error) {
	if !r.signed {
		return h.send(ctx, call, r, new(string))
	}
	var nonce string
	send := func() (*http.Response, error) { return h.send(ctx, call, r, &nonce) }
	resp, err := httpclient.ResendReplayed(ctx, send)
	var ce *dbsync.ClockError
	if !errors.As(err, &ce) || ctx.Err() != nil ||
		!protocol.VerifyClock(call.Secret, call.NodeID, nonce, ce.ServerTime.UnixMilli(), ce.Salt, ce.Signature) {
		return resp, err
	}
	h.clock.Store(int64(ce.ServerTime.Sub(call.Time)))
	return httpclient.ResendReplayed(ctx, send)
}

// send signs (with a new nonce, stored in *nonce) and sends a request
// once, as do.
func (h *HTTPTransport) send(ctx context.Context, call *Call, r *request, nonce *string) (*http.Response, error) {
	u := *h.base
	u.Path += "/" + r.endpoint
	q := ""
	if r.query != nil {
		q = r.query.Encode()
	}
	u.RawQuery = q
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/x-ndjson")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.authorization != "" {
		req.Header.Set("Authorization", r.authorization)
	}
	var sig *httpclient.Signature
	if r.signed {
		s := &protocol.Signed{
			Endpoint:  r.endpoint,
			Query:     q,
			NodeID:    call.NodeID,
			Timestamp: call.Time.Add(h.ClockOffset()).UnixMilli(),
			Nonce:     protocol.NewNonce(),
			Body:      r.body,
			Headers:   &protocol.SignedHeaders{Schema: call.Schema, Tables: call.Tables, Nullable: call.Nullable},
		}
		*nonce = s.Nonce
		sig = &httpclient.Signature{SenderHeader: protocol.HeaderNode, Sender: strconv.FormatInt(s.NodeID, 10),
			Timestamp: s.Timestamp, Nonce: s.Nonce, Signature: s.Sign(call.Secret), Form: protocol.SignatureFormHeaders}
	}
	httpclient.SetHeaders(req.Header, call.Schema, call.Tables, sig)
	if call.Nullable != "" {
		req.Header.Set(protocol.HeaderNullable, call.Nullable)
	}
	return httpclient.Do(ctx, h.http, req, r.endpoint, nil)
}

// maxAnswer bounds the JSON answers read.
const maxAnswer = 64 << 20

// readJSON decodes a whole JSON response, each read of its body bounded
// by h.stall: one that waits longer closes the body, which ends it.
func (h *HTTPTransport) readJSON(resp *http.Response, v any) error {
	body := resp.Body
	resp.Body = answerGuard(body, func() { _ = body.Close() }, h.stall, h.answer)
	return httpclient.ReadJSON(resp, v, maxAnswer)
}

var _ WatchTransport = (*HTTPTransport)(nil)

// Watch implements [WatchTransport].
func (h *HTTPTransport) Watch(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, error) {
	return doJSON[protocol.WatchResponse](ctx, h, call, &request{method: http.MethodGet, endpoint: "watch", query: req.Values(), signed: true})
}

var _ WatchPullTransport = (*HTTPTransport)(nil)

// WatchPull implements [WatchPullTransport]: GET /watch with pull=1, the
// answer told apart by its Content-Type (a pull's stream is NDJSON).
func (h *HTTPTransport) WatchPull(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, io.ReadCloser, error) {
	r := *req
	r.Pull = true
	resp, err := h.do(ctx, call, &request{method: http.MethodGet, endpoint: "watch", query: r.Values(), signed: true})
	if err != nil {
		return nil, nil, err
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		return nil, resp.Body, nil
	}
	var out protocol.WatchResponse
	if err := h.readJSON(resp, &out); err != nil {
		return nil, nil, err
	}
	return &out, nil, nil
}
