package handlers

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
)

// RateLimit bounds requests per source address with a token bucket: each
// address may make Burst requests at once, then one per Every. A request
// beyond it is answered 429 with a Retry-After header and the JSON error
// rate_limited (dbsync.ErrRateLimited), before its body is read.
//
// The source address is the client IP one of chi's ClientIPFrom*
// middlewares stored in the request's context (middleware.GetClientIP),
// else the request's RemoteAddr without the port; an IPv6 address counts
// by its /64 network. Behind a reverse proxy RemoteAddr is the proxy's:
// put middleware.ClientIPFromXFF (with the proxy's address ranges) or
// ClientIPFromHeader in front of the handler. Not middleware.RealIP,
// which takes the forwarded headers from anyone: a client sending a new
// X-Forwarded-For with each request would never be limited.
//
// Memory is bounded: at most Addresses addresses are tracked; an address
// whose bucket is full again is forgotten, and while the table is full of
// addresses still limited, new addresses share one extra bucket.
type RateLimit struct {
	// Every is the time one request is refilled in. Default 6 s (10 per
	// minute); negative: no limit.
	Every time.Duration
	// Burst is how many requests an address may make at once. Default 10.
	Burst int
	// Addresses bounds the addresses tracked. Default 10000.
	Addresses int
}

func (l RateLimit) withDefaults() RateLimit {
	if l.Every == 0 {
		l.Every = 6 * time.Second
	}
	if l.Burst <= 0 {
		l.Burst = 10
	}
	if l.Addresses <= 0 {
		l.Addresses = 10000
	}
	return l
}

// limiter is the token buckets of a RateLimit.
type limiter struct {
	cfg RateLimit
	now func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  bucket // shared by new addresses while buckets is full
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns the limiter of cfg, or nil when cfg turns it off.
func newLimiter(cfg RateLimit) *limiter {
	c := cfg.withDefaults()
	if c.Every < 0 {
		return nil
	}
	return &limiter{cfg: c, now: time.Now, buckets: map[string]*bucket{}, overflow: bucket{tokens: float64(c.Burst)}}
}

// allow takes a token for addr; when there is none it reports how long
// until there is.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	key := addressKey(addr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.cfg.Addresses {
			l.sweep(now)
		}
		if len(l.buckets) < l.cfg.Addresses {
			b = &bucket{tokens: float64(l.cfg.Burst), last: now}
			l.buckets[key] = b
		} else {
			b = &l.overflow
		}
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.cfg.Every))
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(float64(l.cfg.Burst), b.tokens+float64(elapsed)/float64(l.cfg.Every))
		b.last = now
	}
}

// sweep forgets the addresses whose bucket is full again (as good as
// unknown), at most once per Every: a table full of limited addresses is
// not scanned on every request.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.cfg.Every {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= float64(l.cfg.Burst) {
			delete(l.buckets, k)
		}
	}
}

// clientAddr is the request's client address: the IP a chi ClientIPFrom*
// middleware found, else RemoteAddr.
func clientAddr(r *http.Request) string {
	if ip := middleware.GetClientIP(r.Context()); ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// addressKey is the host of a RemoteAddr (or an IP); an IPv6 address is
// reduced to its /64, which one client usually holds whole.
func addressKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// allowRegister applies Config.Registration; a refused request is
// answered here.
func (h *handler) allowRegister(w http.ResponseWriter, r *http.Request) bool {
	if h.registers == nil {
		return true
	}
	ok, wait := h.registers.allow(clientAddr(r))
	if ok {
		return true
	}
	secs := int64(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	h.Error(w, r, fmt.Errorf("%w: too many registrations from %s, retry in %d s", dbsync.ErrRateLimited, addressKey(clientAddr(r)), max(secs, 1)))
	return false
}
