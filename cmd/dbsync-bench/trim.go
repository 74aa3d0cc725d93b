package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/uptrace/bun"
)

// trimOptions tune the -trim mode: the log's size over a long run.
type trimOptions struct {
	rows    int // cities both nodes update
	updates int // row updates in all
	batch   int // rows a node updates before each Sync
	every   int // Syncs between two trims
}

func (o trimOptions) validate() error {
	if o.rows < 1 || o.updates < 1 || o.batch < 1 || o.every < 1 {
		return fmt.Errorf("bad -trim options %+v (each at least 1)", o)
	}
	return nil
}

// trimLog measures the log's size per row on one kind of server: two
// nodes take turns updating -trim-batch random rows of -trim-rows and
// syncing, and the server trims every -trim-every Syncs (server.Trim).
// Ten lines, evenly spread over the run, give the log's rows then; the
// operations ever logged are what the log would hold without trimming.
// The summary gives the most operations the log held, just before a trim.
// It returns a summary line for after the table.
func (b *bench) trimLog(ctx context.Context, kind string, o trimOptions) (string, error) {
	e, err := b.newServer(ctx, kind, models[:1])
	if err != nil {
		return "", err
	}
	defer e.close()
	a, err := e.newClient(ctx, "a", nil)
	if err != nil {
		return "", err
	}
	bb, err := e.newClient(ctx, "b", nil)
	if err != nil {
		return "", err
	}
	cities := make([]City, o.rows)
	for i := range cities {
		cities[i].Name = "city " + strconv.Itoa(i)
	}
	if _, err := a.db.NewInsert().Model(&cities).Exec(ctx); err != nil {
		return "", err
	}
	nodes := []*node{a, bb}
	for _, n := range nodes {
		if _, err := n.c.Sync(ctx); err != nil {
			return "", err
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var trimmed, syncs, trims, peak int64 // peak: the most log operations seen before a trim
	var trimTime time.Duration
	start := time.Now()
	next := o.updates / 10
	for done := 0; done < o.updates; {
		n := nodes[syncs%2]
		if err := n.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for range o.batch {
				id := 1 + rng.IntN(o.rows)
				if _, err := tx.NewUpdate().Model((*City)(nil)).Set("name = ?", "v"+strconv.Itoa(done)).Where("id = ?", id).Exec(ctx); err != nil {
					return err
				}
				done++
			}
			return nil
		}); err != nil {
			return "", err
		}
		if _, err := n.c.Sync(ctx); err != nil {
			return "", fmt.Errorf("sync: %w", err)
		}
		syncs++
		if syncs%int64(o.every) == 0 {
			var ops int64
			if err := e.db.NewRaw("SELECT COUNT(*) FROM sync_operations").Scan(ctx, &ops); err != nil {
				return "", err
			}
			peak = max(peak, ops)
			t0 := time.Now()
			res, err := e.srv.Trim(ctx)
			if err != nil {
				return "", err
			}
			trimTime += time.Since(t0)
			trims++
			trimmed += res.Operations
		}
		if done >= next || done >= o.updates {
			next += o.updates / 10
			if err := b.trimLine(ctx, kind, e, o, done, syncs, trimmed); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("%s: %d Syncs and %d trims in %s; trimming took %s in all (%s per trim); the log peaked at %d operations (%.2f per row) before a trim.",
		kind, syncs, trims, time.Since(start).Round(time.Millisecond), trimTime.Round(time.Millisecond),
		(trimTime / time.Duration(max(trims, 1))).Round(time.Microsecond), peak, float64(peak)/float64(o.rows)), nil
}

// trimFormat lays out one line of the -trim table.
const trimFormat = "| %-8s | %9s | %6s | %9s | %7s | %8s | %8s | %12s | %13s |\n"

// trimHeader heads the -trim table.
func (b *bench) trimHeader() {
	fmt.Fprintf(b.out, trimFormat, "server", "updates", "syncs", "log ops", "ops/row", "versions", "push ids", "ever logged", "ever per row")
	fmt.Fprintln(b.out, "|----------|----------:|-------:|----------:|--------:|---------:|---------:|-------------:|--------------:|")
}

// trimLine prints the log's rows now.
func (b *bench) trimLine(ctx context.Context, kind string, e *env, o trimOptions, done int, syncs, trimmed int64) error {
	var ops, versions, pushes int64
	err := e.db.NewRaw("SELECT (SELECT COUNT(*) FROM sync_operations), (SELECT COUNT(*) FROM sync_versions), (SELECT COUNT(*) FROM sync_pushes)").
		Scan(ctx, &ops, &versions, &pushes)
	if err != nil {
		return err
	}
	ever := ops + trimmed
	fmt.Fprintf(b.out, trimFormat, kind, strconv.Itoa(done), strconv.FormatInt(syncs, 10), strconv.FormatInt(ops, 10),
		fmt.Sprintf("%.2f", float64(ops)/float64(o.rows)), strconv.FormatInt(versions, 10), strconv.FormatInt(pushes, 10),
		strconv.FormatInt(ever, 10), fmt.Sprintf("%.1f", float64(ever)/float64(o.rows)))
	return nil
}
