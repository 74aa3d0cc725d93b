package protocol

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// MaxWatchWait bounds the wait a watch request may ask for; a server
// bounds it further (handlers.Config.WatchTimeout).
const MaxWatchWait = time.Hour

// WatchRequest asks GET /watch to answer once a version after After is
// committed, or after Wait with no such version.
type WatchRequest struct {
	// After is the version the node holds (0: none).
	After int64
	// AfterToken is that version's token, when the node knows it
	// (PullRequest.LatestVersionToken): a server holding the version with
	// another token answers repair_needed at once.
	AfterToken string
	// Wait is the longest the server holds the request (0: the server's
	// default); the server may hold it less.
	Wait time.Duration
	// Pull asks the server to answer a version after After with the pull
	// from After itself (the stream of POST /pull, asking no parents and
	// about no push; pull=1), when it can: a server that holds nodes to
	// scopes answers as without it. ChunkSize is that pull's (0: the
	// server's).
	Pull      bool
	ChunkSize int
}

// WatchResponse answers GET /watch.
type WatchResponse struct {
	// LatestVersionID is the latest version the server knows committed.
	LatestVersionID int64 `json:"latest_version_id"`
	// Changed is true when a version after the request's After was
	// committed; false when the wait ended without one.
	Changed bool `json:"changed"`
}

// ParseWatch reads a watch request from URL parameters: after (required,
// a version: an integer ≥ 0), after_token (optional, that version's
// token), wait_ms (optional, milliseconds, 0 to
// MaxWatchWait), pull (optional, 1) and chunk_size (optional, with pull,
// an integer ≥ 1). Any other parameter, or one given twice, is an error.
func ParseWatch(v url.Values) (*WatchRequest, error) {
	req := &WatchRequest{}
	seenAfter := false
	for name, vals := range v {
		if len(vals) != 1 {
			return nil, fmt.Errorf("%w: parameter %q given %d times", wire.ErrBadRequest, name, len(vals))
		}
		switch name {
		case "after":
			n, err := strconv.ParseInt(vals[0], 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: after must be a version (an integer ≥ 0)", wire.ErrBadRequest)
			}
			req.After, seenAfter = n, true
		case "after_token":
			req.AfterToken = vals[0]
		case "wait_ms":
			n, err := strconv.ParseInt(vals[0], 10, 64)
			if err != nil || n < 0 || n > MaxWatchWait.Milliseconds() {
				return nil, fmt.Errorf("%w: wait_ms must be an integer from 0 to %d", wire.ErrBadRequest, MaxWatchWait.Milliseconds())
			}
			req.Wait = time.Duration(n) * time.Millisecond
		case "pull":
			if vals[0] != "1" {
				return nil, fmt.Errorf("%w: pull must be 1", wire.ErrBadRequest)
			}
			req.Pull = true
		case "chunk_size":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%w: chunk_size must be an integer ≥ 1", wire.ErrBadRequest)
			}
			req.ChunkSize = n
		default:
			return nil, fmt.Errorf("%w: unknown parameter %q", wire.ErrBadRequest, name)
		}
	}
	if !seenAfter {
		return nil, fmt.Errorf("%w: the after parameter is required", wire.ErrBadRequest)
	}
	if req.ChunkSize > 0 && !req.Pull {
		return nil, fmt.Errorf("%w: chunk_size is for pull=1", wire.ErrBadRequest)
	}
	return req, nil
}

// Values encodes a watch request as URL parameters (the inverse of
// ParseWatch; a Wait is sent in whole milliseconds, 0 left out).
func (req *WatchRequest) Values() url.Values {
	v := url.Values{"after": {strconv.FormatInt(req.After, 10)}}
	if req.AfterToken != "" {
		v.Set("after_token", req.AfterToken)
	}
	if ms := req.Wait.Milliseconds(); ms > 0 {
		v.Set("wait_ms", strconv.FormatInt(ms, 10))
	}
	if req.Pull {
		v.Set("pull", "1")
		if req.ChunkSize > 0 {
			v.Set("chunk_size", strconv.Itoa(req.ChunkSize))
		}
	}
	return v
}
