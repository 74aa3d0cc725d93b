package protocol_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/protocol"
)

// benchChunk is a chunk of 10,000 inserts (100 lists, 9,900 todos).
func benchChunk() *protocol.PushChunk {
	c := &protocol.PushChunk{PushID: "0b9b7f0e-6c8c-4a35-9f0f-6f2f3c1b8e55", Seq: 3, Payload: protocol.Payload{}}
	for i := range 10000 {
		table, row := "todos", fmt.Sprintf(`{"id":%d,"list_id":%d,"title":"todo %d","done":false}`, i+1, i%100+1, i+1)
		if i < 100 {
			table, row = "lists", fmt.Sprintf(`{"id":%d,"name":"list %d"}`, i+1, i+1)
		}
		c.Operations = append(c.Operations, protocol.Operation{Order: int64(i + 1), Table: table, RowID: fmt.Sprint(i + 1), Command: protocol.Insert})
		c.Payload[table] = append(c.Payload[table], json.RawMessage(row))
	}
	return c
}

// BenchmarkEncodePushChunk encodes a chunk of 10,000 inserts, as a node
// does for each chunk it sends.
func BenchmarkEncodePushChunk(b *testing.B) {
	c := benchChunk()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePushChunk decodes a chunk of 10,000 inserts, as the
// server does when it stages it and again when it commits it.
func BenchmarkDecodePushChunk(b *testing.B) {
	body, err := benchChunk().MarshalJSON()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := protocol.DecodePushChunk(body); err != nil {
			b.Fatal(err)
		}
	}
}
