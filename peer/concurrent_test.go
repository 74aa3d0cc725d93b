package peer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/peer"
)

// observed is a version of a row with its content ("" when deleted).
type observed struct {
	v    version
	body string
}

// oracle keeps, per row, the highest version written anywhere.
type oracle struct {
	mu   sync.Mutex
	best map[uuid.UUID]observed
}

// observe reads a row's version and content on n in one snapshot and
// keeps it when it is the highest seen. Called right after each local
// write, it sees every version that can win.
func (o *oracle) observe(t testing.TB, n *peer.Node, id uuid.UUID) {
	var ob observed
	var found bool
	// One snapshot: on PostgreSQL a read-only transaction is read
	// committed unless asked, and a delete committed between the two
	// reads left the row's version without its row.
	err := dialect.Snapshot(ctx, n.DB(), func(ctx context.Context, tx bun.Tx) error {
		ob.v, found = versionOf(t, tx, "notes", id.String())
		if !found || ob.v.Deleted {
			return nil
		}
		return tx.QueryRowContext(ctx, "SELECT body FROM notes WHERE id = ?", id).Scan(&ob.body)
	})
	if err != nil {
		t.Errorf("observe: %v", err)
		return
	}
	if !found {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if have, ok := o.best[id]; !ok || ob.v.newer(have.v) {
		o.best[id] = ob
	}
}

// TestThreePeersConcurrent is the case reldatasync's README leaves open:
// node P syncs with Q and with R at the same time, while P also writes,
// and all three edit the same few rows. After each round's syncs and a
// final quiet exchange, every node holds, for every row, the highest
// (HLC, node) version written anywhere: no winner is lost. 15 rounds (8
// under the race detector); 150 with DBSYNC_LONG=1.
func TestThreePeersConcurrent(t *testing.T) {
	t.Parallel()
	iterations := 15
	if dbtest.Race() {
		iterations = 8
	}
	if dbtest.Long() {
		iterations = 150
	}
	setups := []struct {
		name  string
		kinds [3]string // P, Q, R
	}{
		{"P=sqlite", [3]string{dbtest.KindSQLite, dbtest.KindPostgres, dbtest.KindSQLite}},
		{"P=postgres", [3]string{dbtest.KindPostgres, dbtest.KindSQLite, dbtest.KindSQLite}},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d (%d iterations)", seed, iterations)
			p, q, r := newNode(t, s.kinds[0], nil), newNode(t, s.kinds[1], nil), newNode(t, s.kinds[2], nil)
			nodes := []*peer.Node{p, q, r}
			hot := make([]uuid.UUID, 6)
			orc := &oracle{best: map[uuid.UUID]observed{}}
			for i := range hot {
				x := newNote("initial")
				hot[i] = x.ID
				insert(t, p, x)
				orc.observe(t, p, x.ID)
			}
			mustSync(t, q, p.AsPeer())
			mustSync(t, r, p.AsPeer())
			counter := 0
			var cmu sync.Mutex
			write := func(n *peer.Node, name string, rng *rand.Rand) {
				id := hot[rng.IntN(len(hot))]
				cmu.Lock()
				counter++
				b := fmt.Sprintf("%s %d", name, counter)
				cmu.Unlock()
				var err error
				switch k := rng.IntN(10); {
				case k < 6:
					_, err = n.DB().ExecContext(ctx, "UPDATE notes SET body = ? WHERE id = ?", b, id)
				case k < 8:
					_, err = n.DB().ExecContext(ctx, "DELETE FROM notes WHERE id = ?", id)
				default:
					x := newNote(b)
					x.ID = id
					_, err = n.DB().NewInsert().Model(x).On("CONFLICT (id) DO NOTHING").Exec(ctx)
				}
				if err != nil {
					t.Errorf("write on %s: %v", name, err)
					return
				}
				orc.observe(t, n, id)
			}
			for it := range iterations {
				rng := rand.New(rand.NewPCG(seed, uint64(it)))
				for i, n := range nodes[1:] {
					for range 3 {
						write(n, []string{"Q", "R"}[i], rng)
					}
				}
				var wg sync.WaitGroup
				errs := make(chan error, 2)
				for _, other := range []*peer.Node{q, r} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := p.Sync(ctx, other.AsPeer())
						errs <- err
					}()
				}
				prng := rand.New(rand.NewPCG(seed, uint64(it)+1<<32))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 3 {
						write(p, "P", prng)
					}
				}()
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("iteration %d: %v", it, err)
					}
				}
				if t.Failed() {
					t.FailNow()
				}
			}
			// Quiet: P relays between Q and R.
			for range 2 {
				mustSync(t, p, q.AsPeer())
				mustSync(t, p, r.AsPeer())
			}
			sameDigests(t, nodes...)
			for _, id := range hot {
				want, ok := orc.best[id]
				if !ok {
					t.Fatalf("no version observed for %s", id)
				}
				for i, n := range nodes {
					got, _ := versionOf(t, n.DB(), "notes", id.String())
					b := body(t, n, id)
					if want.v.Deleted {
						if !got.Deleted || b != "(none)" || got.HLC != want.v.HLC || got.Node != want.v.Node {
							t.Fatalf("node %d: row %s is %s %q, want deleted at %s", i, id, fmtVersion(got), b, fmtVersion(want.v))
						}
						continue
					}
					if got.HLC != want.v.HLC || got.Node != want.v.Node || got.Deleted || b != want.body {
						t.Fatalf("node %d: row %s is %s %q, want %s %q", i, id, fmtVersion(got), b, fmtVersion(want.v), want.body)
					}
				}
			}
		})
	}
}
