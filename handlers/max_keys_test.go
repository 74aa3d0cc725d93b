package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// seqRow has an integer key with a sequence (AUTOINCREMENT, an identity).
type seqRow struct {
	bun.BaseModel `bun:"table:seq_rows"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

// plainKeyRow has an integer key without a sequence.
type plainKeyRow struct {
	bun.BaseModel `bun:"table:plain_key_rows"`

	ID   int64  `bun:"id,pk"`
	Name string `bun:"name,notnull"`
}

// TestMaxKeysDeletedTopKey: a pull header's max_keys counts a deleted
// row's key only through the table's key sequence, as docs/protocol.md
// says: a table without one forgets a deleted top key. The doc promised
// that max_keys covers every key the server has used, deleted rows'
// included, which a client relied on to never take such a key again.
func TestMaxKeysDeletedTopKey(t *testing.T) {
	t.Parallel()
	doc := protocolDoc(t)
	want := "the larger of the table's greatest key and its key sequence (SQLite `AUTOINCREMENT`, PostgreSQL `serial` or an identity): a table without a sequence forgets a deleted top key"
	if !strings.Contains(doc, want) {
		t.Errorf("docs/protocol.md does not say %q", want)
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*seqRow)(nil), (*plainKeyRow)(nil)}
			e := newEnv(t, kind, &envConfig{models: models, schema: synctest.CreateTables(models...)})
			e.mustPush(`{"order":1,"table":"seq_rows","row_id":"50","command":"i"},{"order":2,"table":"plain_key_rows","row_id":"50","command":"i"}`,
				`"seq_rows":[{"id":50,"name":"a"}],"plain_key_rows":[{"id":50,"name":"a"}]`)
			e.mustPush(`{"order":3,"table":"seq_rows","row_id":"50","command":"d"},{"order":4,"table":"plain_key_rows","row_id":"50","command":"d"}`, ``)
			status, raw, _ := e.do(e.request(http.MethodPost, "pull", "", []byte(`{}`)))
			if status != http.StatusOK {
				t.Fatalf("pull: %d %s", status, raw)
			}
			head := e.stream("pull", raw)[0]
			if got := head.MaxKeys["seq_rows"]; got < 50 {
				t.Errorf("max_keys of the table with a sequence: %d, want at least 50", got)
			}
			if got := head.MaxKeys["plain_key_rows"]; got != 0 {
				t.Errorf("max_keys of the table without a sequence: %d, want 0 (the deleted top key forgotten)", got)
			}
		})
	}
}
