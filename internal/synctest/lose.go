package synctest

import (
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
)

// AnswerLoser serves a real handler and, for the endpoints (last path
// segments) it is armed for, serves a request whole (its nonce spent, its
// work done) and then drops the connection without the answer, as a
// server process that dies, or a proxy that cuts the connection, after
// the work. It counts the copies of each endpoint's requests that reach
// the handler.
type AnswerLoser struct {
	H      http.Handler
	mu     sync.Mutex
	lose   map[string]int // endpoint → answers still to lose
	copies map[string]int // endpoint → requests served since Reset
}

// NewAnswerLoser returns an AnswerLoser of h, armed for nothing.
func NewAnswerLoser(h http.Handler) *AnswerLoser {
	return &AnswerLoser{H: h, lose: map[string]int{}, copies: map[string]int{}}
}

func (l *AnswerLoser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep := path.Base(r.URL.Path)
	l.mu.Lock()
	l.copies[ep]++
	lose := l.lose[ep] > 0
	if lose {
		l.lose[ep]--
	}
	l.mu.Unlock()
	if !lose {
		l.H.ServeHTTP(w, r)
		return
	}
	l.H.ServeHTTP(httptest.NewRecorder(), r)
	panic(http.ErrAbortHandler) // the connection closes, no answer sent
}

// Arm has the answer of the next request to ep lost.
func (l *AnswerLoser) Arm(ep string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lose[ep]++
}

// Reset forgets the requests counted.
func (l *AnswerLoser) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.copies)
}

// Served returns how many requests to ep reached the handler since Reset.
func (l *AnswerLoser) Served(ep string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copies[ep]
}

// Disarm loses no more answers.
func (l *AnswerLoser) Disarm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.lose)
}
