package handlers

import (
	"fmt"
	"testing"
	"time"
)

// TestLimiterBounded: buckets refill at the configured rate, IPv6
// addresses count by /64, and the table never holds more than Addresses
// buckets: new addresses share one bucket while it is full of limited
// ones, and refilled buckets are forgotten.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newLimiter(RateLimit{Every: time.Minute, Burst: 2, Addresses: 4})
	l.now = func() time.Time { return now }
	take := func(addr string, want bool) {
		t.Helper()
		ok, wait := l.allow(addr)
		if ok != want || (!ok && (wait <= 0 || wait > time.Minute)) {
			t.Fatalf("%s: allowed %v (wait %s), want %v", addr, ok, wait, want)
		}
		if len(l.buckets) > 4 {
			t.Fatalf("%d buckets, bound 4", len(l.buckets))
		}
	}
	for i := range 4 {
		addr := fmt.Sprintf("10.0.0.%d:1234", i)
		take(addr, true)
		take(addr, true)
		take(addr, false)
	}
	// The table is full of limited addresses: new ones share a bucket.
	take("10.0.1.1:1", true)
	take("[2001:db8::1]:1", true)
	take("10.0.1.2:1", false)
	if len(l.buckets) != 4 {
		t.Fatalf("%d buckets, want 4", len(l.buckets))
	}
	// An IPv6 /64 is one address; another port of the same host too.
	if a, b, c := addressKey("[2001:db8::1]:1"), addressKey("[2001:db8::ffff]:2"), addressKey("[2001:db8:0:1::1]:3"); a != b || a == c {
		t.Fatalf("IPv6 keys %q %q %q", a, b, c)
	}
	if a, b := addressKey("10.0.0.1:1"), addressKey("10.0.0.1:2"); a != b || a != "10.0.0.1" {
		t.Fatalf("IPv4 keys %q %q", a, b)
	}
	now = now.Add(30 * time.Second)
	take("10.0.0.1:9", false) // half a token
	now = now.Add(30 * time.Second)
	take("10.0.0.1:9", true)
	now = now.Add(2 * time.Minute)
	take("192.168.1.1:5", true) // the refilled buckets are forgotten
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", len(l.buckets))
	}
	if newLimiter(RateLimit{Every: -1}) != nil {
		t.Fatal("a negative Every must turn the limit off")
	}
}
