package main

// The load mode with -feed: every client keeps in sync with client.Watch
// (long polls of GET /watch, woken by the servers' LISTEN/NOTIFY), and
// the writers among them write every -think and signal their Watch. Its
// extra figure: from the commit of a version on one server to its arrival
// (the end of the pull that applied it) on every other node.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/stats"
)

// feedThink is the mean pause between a writer's writes with -feed, unless
// -think is given.
const feedThink = 5 * time.Second

// flagSet reports whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// feedNote says what each client does with -feed.
func feedNote(o loadOptions) string {
	writers := o.writers
	if writers == 0 {
		writers = o.clients
	}
	return fmt.Sprintf("each client runs client.Watch, and %d of them write %d rows (%s) every %s on average and signal it", writers, o.rows, conflictNote(o), o.think)
}

// feedFigures is what a client of the feed mode records (under its
// loadClient's mu).
type feedFigures struct {
	node     int64 // the client's node id (from its events)
	pulledTo int64 // the version its pulls have reached
	// arrivals are its pulls: the versions in (from, to] arrived at.
	arrivals []arrival
}

type arrival struct {
	from, to int64
	at       time.Time
}

// pushed moves the writes made before an accepted push to write→accepted.
func (f *feedFigures) pushed(lc *loadClient, e dbsync.Event, now time.Time) {
	f.node = e.NodeID
	if e.Operations == 0 || !lc.running || lc.feed.arrivals == nil { // not the feed mode
		return
	}
	started := now.Add(-e.Duration).UnixNano()
	kept := lc.pending[:0]
	for _, w := range lc.pending {
		if w <= started {
			lc.toAccepted = append(lc.toAccepted, now.Sub(time.Unix(0, w)))
		} else {
			kept = append(kept, w)
		}
	}
	lc.pending = kept
}

// pulled records the versions a pull brought.
func (f *feedFigures) pulled(e dbsync.Event, now time.Time) {
	f.node = e.NodeID
	if f.arrivals == nil || e.VersionID <= f.pulledTo { // not the feed mode, or nothing new
		return
	}
	f.arrivals = append(f.arrivals, arrival{from: f.pulledTo, to: e.VersionID, at: now})
	f.pulledTo = e.VersionID
}

// feedLoop runs the client's Watch until the deadline and, if it is a
// writer, writes every think (on average) meanwhile.
func (lc *loadClient) feedLoop(ctx context.Context, o loadOptions, deadline time.Time) {
	v, err := lc.node.c.Version(ctx)
	if err != nil {
		lc.fail(err)
		return
	}
	lc.mu.Lock()
	lc.running, lc.feed.pulledTo, lc.feed.arrivals = true, v, []arrival{}
	lc.mu.Unlock()
	defer func() {
		lc.mu.Lock()
		lc.running = false
		lc.mu.Unlock()
	}()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	changed := make(chan struct{}, 1)
	writer := o.writers == 0 || lc.i < o.writers
	done := make(chan error, 1)
	go func() {
		done <- lc.node.c.Watch(ctx, &client.WatchOptions{Changed: changed, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	}()
	rng := rand.New(rand.NewPCG(uint64(lc.i), 17))
	for writer {
		pause := o.think/2 + time.Duration(rng.Int64N(int64(o.think)+1))
		select {
		case <-ctx.Done():
			writer = false
			continue
		case <-time.After(pause):
		}
		ids := lc.ids
		if o.shared > 0 {
			ids = ids[:0:0]
			for _, k := range rng.Perm(o.shared)[:min(o.rows, o.shared)] {
				ids = append(ids, lc.ids[k])
			}
		}
		if err := lc.write(ctx, ids); err != nil {
			if ctx.Err() == nil {
				lc.mu.Lock()
				lc.fail(fmt.Errorf("write: %w", err))
				lc.mu.Unlock()
			}
			break
		}
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if err := <-done; err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		lc.mu.Lock()
		lc.fail(fmt.Errorf("watch: %w", err))
		lc.mu.Unlock()
	}
}

// feedTable prints commit→visible: for every version and every node that
// did not create it, from the version's creation on the server
// (sync_versions.created, stamped in the push's transaction just before
// it commits: this slightly overstates the delay) to the end of the pull
// that brought it to the node.
func (b *bench) feedTable(ctx context.Context, db *bun.DB, lcs []*loadClient) error {
	var versions []struct {
		VersionID int64     `bun:"version_id"`
		NodeID    *int64    `bun:"node_id"`
		Created   time.Time `bun:"created"`
	}
	if err := db.NewRaw("SELECT version_id, node_id, created FROM sync_versions").Scan(ctx, &versions); err != nil {
		return fmt.Errorf("load: read versions: %w", err)
	}
	type version struct {
		node    int64
		created time.Time
	}
	byID := make(map[int64]version, len(versions))
	for _, v := range versions {
		var node int64
		if v.NodeID != nil {
			node = *v.NodeID
		}
		byID[v.VersionID] = version{node, v.Created}
	}
	var delays []time.Duration
	for _, lc := range lcs {
		for _, a := range lc.feed.arrivals {
			for id := a.from + 1; id <= a.to; id++ {
				if v, ok := byID[id]; ok && v.node != lc.feed.node {
					delays = append(delays, a.at.Sub(v.created))
				}
			}
		}
	}
	s := stats.Sorted(delays)
	pct := func(p float64) string {
		if len(s) == 0 {
			return "-"
		}
		return fmtLatency(stats.Percentile(s, p))
	}
	fmt.Fprintf(b.out, "\nFeed: every client ran client.Watch. commit→visible (a version's commit on a server to the end of the pull that applied it on another node, %d arrivals): p50 %s, p99 %s, max %s.\n",
		len(s), pct(0.5), pct(0.99), pct(1))
	return nil
}
