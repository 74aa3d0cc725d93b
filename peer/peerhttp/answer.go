package peerhttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
)

// HeaderAnswer carries the signature of a successful answer: HMAC-SHA256
// under the mesh secret over the endpoint, the request's nonce and the
// answer's body, so that a node takes only answers from a holder of the
// secret (a party that answers at the peer's URL without it cannot
// inject rows), each bound to its request.
const HeaderAnswer = "X-Dbsync-Answer-Signature"

// answerMAC is the signature of an answer to a request with nonce.
func answerMAC(secret []byte, endpoint, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "dbsync-peer-answer\n%s\n%s\n%s\n", endpoint, nonce, hex.EncodeToString(sum[:]))
	return hex.EncodeToString(m.Sum(nil))
}

// answer writes v as a signed 200 answer to the request nonce.
func (p *handler) answer(w http.ResponseWriter, endpoint, nonce string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(HeaderAnswer, answerMAC(p.cfg.Secret, endpoint, nonce, body))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// readAnswer reads a successful answer of at most Peer.MaxAnswer bytes,
// checks its signature for the request with nonce, and decodes it into v.
func (p *Peer) readAnswer(resp *http.Response, endpoint, nonce string, v any) error {
	defer resp.Body.Close()
	limit := p.MaxAnswer
	if limit <= 0 {
		limit = 256 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("%w: response cut short: %w", dbsync.ErrNetwork, err)
	}
	if int64(len(body)) > limit {
		over := &peer.LimitError{Limit: "peerhttp.Peer.MaxAnswer", Max: limit}
		if endpoint == "changes" {
			over.NameRow(body) // (a page: Changes tells a row too large from a page)
		}
		return fmt.Errorf("%w: the %s answer: %w", dbsync.ErrBadResponse, endpoint, over)
	}
	if !hmac.Equal([]byte(resp.Header.Get(HeaderAnswer)), []byte(answerMAC(p.Secret, endpoint, nonce, body))) {
		return fmt.Errorf("%w: the %s answer is not signed with the mesh secret (not a peer of the mesh, or one older than this release)", dbsync.ErrBadResponse, endpoint)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	return nil
}
