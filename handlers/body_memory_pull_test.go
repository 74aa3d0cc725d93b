package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestBodyMemoryPullGivenBackBeforeStream: a pull's body (over 1 MiB, its
// keys) is decoded before its answer streams; the stream may last long
// (a large answer, a slow node), and must not hold the body's share of
// BodyMemory meanwhile: pushes would be answered 503 busy for as long.
func TestBodyMemoryPullGivenBackBeforeStream(t *testing.T) {
	t.Parallel()
	kind := dbtest.KindSQLite
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	hook := func(ctx context.Context, ev dbsync.Event) {
		if ev.Op != "pull" {
			return
		}
		select {
		case entered <- struct{}{}:
			<-release
		default:
		}
	}
	e := newEnv(t, kind, &envConfig{server: &server.Config{OnEvent: hook},
		handlers: &handlers.Config{BodyMemory: 3 << 20, MaxBodyBytes: 4 << 20}})
	keys := make([]string, 0, 60000)
	for i := range cap(keys) {
		keys = append(keys, fmt.Sprintf("%032d", i))
	}
	zero := int64(0)
	body, err := json.Marshal(&protocol.PullRequest{LatestVersionID: &zero, Deleted: map[string][]string{"notes": keys}})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) < 2<<20 {
		t.Fatalf("pull body of %d bytes, want 2 MiB or more", len(body))
	}
	done := make(chan int, 1)
	go func() {
		status, _, _ := e.do(e.request(http.MethodPost, "pull", "", body))
		done <- status
	}()
	select {
	case <-entered:
	case status := <-done:
		t.Fatalf("pull answered %d before its hook", status)
	}
	big := strings.Repeat("x", 2<<20)
	id := fmt.Sprintf("%q", uuid.NewString())
	push := e.rawPush(`{"order":1,"table":"notes","row_id":`+id+`,"command":"i"}`,
		`"notes":[{"id":`+id+`,"body":"`+big+`","created":"2024-01-01T00:00:00Z","data":null,"score":null,"tag":null,"count":0,"meta":null}]`)
	status, raw, _ := e.push(push)
	free()
	if s := <-done; s != http.StatusOK {
		t.Errorf("pull: %d", s)
	}
	if status != http.StatusOK {
		t.Fatalf("a 2 MiB push while a pull streams: %d %s, want 200 (the pull's body no longer held)", status, raw)
	}
}
