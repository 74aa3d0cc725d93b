package synctest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// SignForm1 signs the signed request r again as a node of a release
// before form 2 (docs/protocol.md, "Signing"): its schema headers, as r
// now holds them, unsigned. A test that sends what such a node sends
// (a header it did not know) changes r's headers, then calls it. The
// secret is read from db, the node's database.
func SignForm1(r *http.Request, db bun.IDB) error {
	if r.Header.Get(protocol.HeaderSignature) == "" {
		return nil
	}
	var node models.Node
	if err := db.NewSelect().Model(&node).Limit(1).Scan(context.Background()); err != nil {
		return fmt.Errorf("synctest: the node's secret: %w", err)
	}
	var body []byte
	if r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			return err
		}
		body, err = io.ReadAll(rc)
		if err != nil {
			return err
		}
	}
	id, err1 := strconv.ParseInt(r.Header.Get(protocol.HeaderNode), 10, 64)
	ts, err2 := strconv.ParseInt(r.Header.Get(protocol.HeaderTimestamp), 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("synctest: malformed signature headers")
	}
	s := &protocol.Signed{Endpoint: path.Base(r.URL.Path), Query: r.URL.Query().Encode(), NodeID: id,
		Timestamp: ts, Nonce: r.Header.Get(protocol.HeaderNonce), Body: body}
	r.Header.Set(protocol.HeaderSignature, s.Sign(node.Secret))
	r.Header.Del(protocol.HeaderSignatureForm)
	return nil
}
