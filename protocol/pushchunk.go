package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// A chunked push (docs/protocol.md, "Chunked push") sends a push too large
// for one request as a sequence of chunks (POST /push-chunk), each a
// PushChunk, then a PushCommit (POST /push-commit) that has the server
// apply them together, as one push. GET /push-status?push_id=… answers a
// PushChunkStatus: which chunks the server holds.

// MaxPushChunks bounds the chunks of one push: a chunk's Seq is below it.
const MaxPushChunks = 100_000

// PushChunk is the body of POST /push-chunk: part of a push. Its
// operations and payload follow the rules of a PushRequest's, and each
// insert or update has its row in the same chunk.
type PushChunk struct {
	// PushID is the push's id (a UUID), the same in every chunk and in the
	// commit.
	PushID string `json:"push_id"`
	// Seq is the chunk's position in the push, from 0.
	Seq int `json:"seq"`
	// Operations are some of the push's operations, oldest first.
	Operations []Operation `json:"operations"`
	// Payload carries the rows of this chunk's inserts and updates.
	Payload Payload `json:"payload"`
}

// MarshalJSON encodes a chunk without re-validating its rows, payload
// tables sorted by name: the same chunk gives the same bytes, hence the
// same digest, so a node resuming a push can tell the chunks the server
// holds.
func (c *PushChunk) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, sizeHint(c.Operations, c.Payload))
	b = append(b, `{"push_id":`...)
	b = wire.AppendString(b, c.PushID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, int64(c.Seq), 10)
	b = append(b, `,"operations":`...)
	b = appendOperations(b, c.Operations)
	b = append(b, `,"payload":`...)
	b = appendPayload(b, c.Payload, slices.Sorted(maps.Keys(c.Payload)))
	return append(b, '}'), nil
}

// DecodePushChunk decodes a chunk whose rows alias data: data must not
// change while the chunk is in use. Unknown fields are ignored; push_id
// and seq are required.
func DecodePushChunk(data []byte) (*PushChunk, error) {
	c := &PushChunk{Seq: -1}
	err := wire.ForEachMember(data, func(key string, v []byte) error {
		var err error
		switch key {
		case "push_id":
			c.PushID, err = parseString(v, "push_id")
		case "seq":
			var n int64
			if n, err = parseInt(v, "seq"); err == nil {
				if n < 0 || n >= MaxPushChunks {
					return fmt.Errorf("%w: seq %d is outside 0-%d", wire.ErrBadRequest, n, MaxPushChunks-1)
				}
				c.Seq = int(n)
			}
		case "operations":
			c.Operations, err = decodeOperations(v)
		case "payload":
			c.Payload, err = decodePayload(v)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Seq < 0 {
		return nil, fmt.Errorf("%w: seq is required", wire.ErrBadRequest)
	}
	return c, nil
}

// Request returns the chunk as a push request without a base version,
// sharing its operations and payload: what the server validates.
func (c *PushChunk) Request() *PushRequest {
	return &PushRequest{PushID: c.PushID, Operations: c.Operations, Payload: c.Payload}
}

// PushChunkResponse answers an accepted chunk.
type PushChunkResponse struct {
	PushID string `json:"push_id"`
	Seq    int    `json:"seq"`
	// Digest is ChunkDigest of the body the server staged.
	Digest string `json:"digest"`
	// VersionID is set, and nothing staged, when the push id was applied
	// already: the version it created (send the commit to get the usual
	// duplicate answer).
	VersionID *int64 `json:"version_id,omitempty"`
}

// PushCommit is the body of POST /push-commit: apply the push's staged
// chunks 0 to Chunks-1 as one push.
type PushCommit struct {
	PushID string `json:"push_id"`
	// LatestVersionID is the push's base, and LatestVersionToken its
	// token, as in a PushRequest.
	LatestVersionID    *int64 `json:"latest_version_id"`
	LatestVersionToken string `json:"latest_version_token,omitempty"`
	// OwnVersionID is the node's greatest settled own version, as in a
	// PushRequest.
	OwnVersionID *int64 `json:"own_version_id,omitempty"`
	// Chunks is the number of chunks of the push (at least 1).
	Chunks int `json:"chunks"`
	// Digest is CommitDigest of the chunks' digests, in order: the server
	// applies the push only if the chunks it holds have these digests.
	Digest string `json:"digest"`
}

// PushChunkStatus answers GET /push-status: what the server holds of a
// push.
type PushChunkStatus struct {
	PushID string `json:"push_id"`
	// VersionID is the version the push created, when it was applied; the
	// chunks are gone then.
	VersionID *int64 `json:"version_id,omitempty"`
	// VersionToken is that version's token (Version.Token; empty for a
	// version created before tokens).
	VersionToken string `json:"version_token,omitempty"`
	// Chunks are the staged chunks, by seq.
	Chunks []StagedChunk `json:"chunks"`
}

// StagedChunk is one chunk a server holds.
type StagedChunk struct {
	Seq    int    `json:"seq"`
	Digest string `json:"digest"`
}

// ChunkDigest is the digest of a chunk: the lowercase hex SHA-256 of its
// body, the exact bytes sent.
func ChunkDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// CommitDigest is the digest a commit carries: the lowercase hex SHA-256
// of the chunks' digests (ChunkDigest, as text), in seq order, each
// followed by "\n".
func CommitDigest(chunkDigests []string) string {
	h := sha256.New()
	for _, d := range chunkDigests {
		h.Write([]byte(d))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
