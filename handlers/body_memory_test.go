package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestBodyMemoryBounded: an authenticated push body larger than 1 MiB is
// read into memory once its signature holds. Without a bound across
// requests, one node (or a stolen credential) sending many large pushes
// at once multiplied MaxPushBytes. With BodyMemory 3 MiB, a 2 MiB push
// held in the server (BeforePush waits) leaves no room for a second one:
// 503 busy, writing nothing; once the first is answered, its memory is
// given back and the next push goes through.
func TestBodyMemoryBounded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			entered, release := make(chan struct{}, 1), make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			defer free() // a failure must not leave the first push held
			hold := func(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
				select {
				case entered <- struct{}{}:
					<-release
				default:
				}
				return nil
			}
			e := newEnv(t, kind, &envConfig{server: &server.Config{BeforePush: hold},
				handlers: &handlers.Config{BodyMemory: 3 << 20, MaxPushBytes: 3 << 20, MaxChunkBytes: 1 << 20, MaxPullBytes: 1 << 20}})
			big := strings.Repeat("x", 2<<20)
			note := func() []byte { // a push inserting a note of 2 MiB
				id := fmt.Sprintf("%q", uuid.NewString())
				return e.rawPush(`{"order":1,"table":"notes","row_id":`+id+`,"command":"i"}`,
					`"notes":[{"id":`+id+`,"body":"`+big+`","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":null}]`)
			}
			first := note()
			type answer struct {
				status int
				raw    []byte
			}
			done := make(chan answer, 1)
			go func() {
				status, raw, _ := e.push(first)
				done <- answer{status, raw}
			}()
			select {
			case <-entered:
			case a := <-done:
				t.Fatalf("first push answered before it reached the server's hook: %d %s", a.status, a.raw)
			}
			before := e.state()
			// Without the bound it would wait for the first (a time out
			// here, not a hang).
			short, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			status, raw, d := e.do(e.request(http.MethodPost, "push", "", note()).WithContext(short))
			if status != http.StatusServiceUnavailable || d.Code != protocol.CodeBusy {
				t.Fatalf("second large push while the first holds its body: %d %s, want 503 busy", status, raw)
			}
			e.unchanged(before, "push refused busy")
			free()
			if a := <-done; a.status != http.StatusOK {
				t.Fatalf("first push: %d %s", a.status, a.raw)
			}
			if status, raw, _ := e.push(note()); status != http.StatusOK {
				t.Fatalf("a large push once the first is answered: %d %s, want 200 (its memory given back)", status, raw)
			}
		})
	}
}

// TestBodyMemoryHoldsTheLargestBody: a BodyMemory set below a body bound
// would answer a body that large 503 busy at every retry: the budget is
// raised to the largest bound.
func TestBodyMemoryHoldsTheLargestBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.KindSQLite, &envConfig{handlers: &handlers.Config{BodyMemory: 1 << 20, MaxPushBytes: 3 << 20}})
	id := fmt.Sprintf("%q", uuid.NewString())
	body := e.rawPush(`{"order":1,"table":"notes","row_id":`+id+`,"command":"i"}`,
		`"notes":[{"id":`+id+`,"body":"`+strings.Repeat("x", 2<<20)+`","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":null}]`)
	if status, raw, _ := e.push(body); status != http.StatusOK {
		t.Fatalf("a 2 MiB push under MaxPushBytes 3 MiB and BodyMemory 1 MiB: %d %s, want 200", status, raw)
	}
}
