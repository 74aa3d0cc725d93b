package peerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestChangesAnswerEpochChecked: a peer holding the mesh secret whose GET
// /changes answer carries an epoch that is not a UUID in canonical form
// (peer.ValidEpoch) gets it refused by the pulling node
// (dbsync.ErrBadResponse), nothing applied and its cursor unmoved. Before,
// the epoch was recorded as the cursor's, and sent back it made the peer
// take it for a restore of its own (another spelling of a UUID), or the
// peer refused every pull after (400).
func TestChangesAnswerEpochChecked(t *testing.T) {
	t.Parallel()
	secret := []byte("the mesh secret")
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a, b := synctest.NewNode(t, kind, nil), synctest.NewNode(t, kind, nil)
			note := &testmodels.Note{ID: uuid.New(), Body: "B's write", Created: time.Now().UTC().Truncate(time.Microsecond)}
			if _, err := b.DB().NewInsert().Model(note).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			served := NewHandler(b, &Config{Secret: secret})
			var epoch string // what B's /changes answers say, re-signed
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/changes" {
					served.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				served.ServeHTTP(rec, r)
				var page peer.Batch
				if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
					t.Errorf("B's changes: %d %s", rec.Code, rec.Body)
					return
				}
				page.Epoch = epoch
				body, _ := json.Marshal(page)
				w.Header().Set(HeaderAnswer, answerMAC(secret, "changes", r.Header.Get(protocol.HeaderNonce), body))
				_, _ = w.Write(body)
			}))
			t.Cleanup(srv.Close)
			for _, epoch = range []string{"not-a-uuid", "0D9F6A1E-3C4B-4F8E-9A2D-5B6C7D8E9F01", "{0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01}"} {
				_, err := a.Sync(ctx, &Peer{URL: srv.URL, Secret: secret, Self: a})
				if !errors.Is(err, dbsync.ErrBadResponse) {
					t.Errorf("answer epoch %q: sync: %v, want dbsync.ErrBadResponse", epoch, err)
				}
				if cur, err := a.Cursor(ctx, b.ID()); err != nil || cur != (peer.Position{}) {
					t.Fatalf("answer epoch %q: A's cursor for B is %+v (%v), want none", epoch, cur, err)
				}
				var n int
				if err := a.DB().QueryRowContext(ctx, "SELECT count(*) FROM notes WHERE id = ?", note.ID).Scan(&n); err != nil || n != 0 {
					t.Fatalf("answer epoch %q: B's note applied (%d, %v)", epoch, n, err)
				}
			}
		})
	}
}

// TestCursorAnswerChecked: a peer holding the mesh secret whose GET
// /cursor answer holds a position GET /changes refuses (a negative
// pulled_seq, an epoch not a UUID in canonical form) gets it refused by
// the syncing node (dbsync.ErrBadResponse), as a stream's CURSOR frame
// is: nothing sent, no restore recorded. Before, it was taken: the node
// recorded a restore of its own (asking every peer for its own versions
// back) and sent its whole state, at every sync with that peer.
func TestCursorAnswerChecked(t *testing.T) {
	t.Parallel()
	secret := []byte("the mesh secret")
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a, b := synctest.NewNode(t, kind, nil), synctest.NewNode(t, kind, nil)
			note := &testmodels.Note{ID: uuid.New(), Body: "A's write", Created: time.Now().UTC().Truncate(time.Microsecond)}
			if _, err := a.DB().NewInsert().Model(note).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			served := NewHandler(b, &Config{Secret: secret})
			var answer string // B's /cursor answer, re-signed
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/cursor" {
					served.ServeHTTP(w, r)
					return
				}
				body := []byte(answer)
				w.Header().Set(HeaderAnswer, answerMAC(secret, "cursor", r.Header.Get(protocol.HeaderNonce), body))
				_, _ = w.Write(body)
			}))
			t.Cleanup(srv.Close)
			var epoch string
			if err := a.DB().QueryRowContext(ctx, "SELECT epoch FROM sync_lww_feed WHERE id = 1").Scan(&epoch); err != nil {
				t.Fatal(err)
			}
			for _, answer = range []string{
				`{"pulled_seq": 0, "epoch": "not-a-uuid"}`,
				`{"pulled_seq": 0, "epoch": "` + strings.ToUpper(epoch) + `"}`,
				`{"pulled_seq": -1}`,
			} {
				_, err := a.Sync(ctx, &Peer{URL: srv.URL, Secret: secret, Self: a})
				if !errors.Is(err, dbsync.ErrBadResponse) {
					t.Errorf("cursor answer %s: sync: %v, want dbsync.ErrBadResponse", answer, err)
				}
				var restores, n int
				if err := a.DB().QueryRowContext(ctx, "SELECT restores FROM sync_lww_feed WHERE id = 1").Scan(&restores); err != nil || restores != 0 {
					t.Fatalf("cursor answer %s: A recorded %d restores of its own (%v)", answer, restores, err)
				}
				if err := b.DB().QueryRowContext(ctx, "SELECT count(*) FROM notes WHERE id = ?", note.ID).Scan(&n); err != nil || n != 0 {
					t.Fatalf("cursor answer %s: A's note sent (%d, %v)", answer, n, err)
				}
			}
		})
	}
}
