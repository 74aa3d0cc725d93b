package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// FuzzDecodePushChunk holds DecodePushChunk, the server's decoder of POST
// /push-chunk bodies, to the rules of a push request: a refusal is a bad
// request; an accepted chunk came from valid JSON, has a seq in range, and
// re-encodes (MarshalJSON, the bytes a node digests) to a chunk that
// decodes the same and encodes to the same bytes again.
func FuzzDecodePushChunk(f *testing.F) {
	f.Add([]byte(`{"push_id":"x","seq":0,"operations":[{"order":1,"table":"t","row_id":"1","command":"i"}],"payload":{"t":[{"id":1}]}}`))
	f.Add([]byte(`{"push_id":"x","seq":99999,"operations":[],"payload":{}}`))
	f.Add([]byte(`{"push_id":"x","seq":100000}`))
	f.Add([]byte(`{"push_id":"x","seq":-1}`))
	f.Add([]byte(`{"push_id":"x"}`))
	f.Add([]byte(`{"seq":1e0,"payload":{"b":[{"z":"\u00e9"}],"a":[{"a":[1,{"b":null}]}]}}`))
	f.Add([]byte(`{"seq":3,"operations":[{"table":"t","command":"i"},{"table":"t\"","command":"d"}],"unknown":[1,2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := protocol.DecodePushChunk(data)
		if err != nil {
			if !errors.Is(err, dbsync.ErrBadRequest) && !errors.Is(err, dbsync.ErrUnknownColumn) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if c.Seq < 0 || c.Seq >= protocol.MaxPushChunks {
			t.Fatalf("accepted seq %d", c.Seq)
		}
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("re-encoding is invalid JSON: %s", b)
		}
		again, err := protocol.DecodePushChunk(b)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if again.Seq != c.Seq || normalizePush(again.Request()) != normalizePush(c.Request()) {
			t.Fatalf("round trip changed the chunk: %s", b)
		}
		b2, err := again.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("the same chunk encodes to other bytes:\n%s\n%s", b, b2)
		}
	})
}
