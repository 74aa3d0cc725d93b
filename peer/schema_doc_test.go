package peer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestSchemaAsDocumented: Node.Schema is what docs/protocol.md (Peer
// HTTP, X-Dbsync-Schema) says: the first 16 bytes, in hex, of the SHA-256
// of the registry's fingerprint and a newline, then a line per foreign
// key to an integer-keyed table, sorted.
func TestSchemaAsDocumented(t *testing.T) {
	t.Parallel()
	n := modelNode(t, dbtest.KindSQLite, nil, (*Shelf)(nil), (*Poster)(nil), (*Book)(nil))
	sum := sha256.Sum256([]byte(n.Registry().Fingerprint() + "\n" +
		"books.shelf_id -> shelves\n" +
		"posters.shelf_id -> shelves\n"))
	if want := hex.EncodeToString(sum[:16]); n.Schema() != want {
		t.Fatalf("Schema() = %s, want %s as docs/protocol.md computes it", n.Schema(), want)
	}
}
