package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/go-dbsync/dbsync/protocol"
)

var _ ChunkedTransport = (*HTTPTransport)(nil)

// PushChunk implements [ChunkedTransport].
func (h *HTTPTransport) PushChunk(ctx context.Context, call *Call, body []byte) (*protocol.PushChunkResponse, error) {
	return doJSON[protocol.PushChunkResponse](ctx, h, call, &request{method: http.MethodPost, endpoint: "push-chunk", body: body, signed: true})
}

// PushCommit implements [ChunkedTransport].
func (h *HTTPTransport) PushCommit(ctx context.Context, call *Call, req *protocol.PushCommit) (*protocol.PushResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: push commit: %w", err)
	}
	return doJSON[protocol.PushResponse](ctx, h, call, &request{method: http.MethodPost, endpoint: "push-commit", body: body, signed: true})
}

// PushStatus implements [ChunkedTransport].
func (h *HTTPTransport) PushStatus(ctx context.Context, call *Call, pushID string) (*protocol.PushChunkStatus, error) {
	return doJSON[protocol.PushChunkStatus](ctx, h, call, &request{method: http.MethodGet, endpoint: "push-status", query: url.Values{"push_id": {pushID}}, signed: true})
}
