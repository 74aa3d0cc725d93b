package peer_test

import (
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestCaseOnlyKeyEditResync: a node that missed a case-only key edit
// whose tombstone its peer purged resynchronizes: the state holds "FR"
// live, no delete of "fr". It failed every resynchronization with
// ErrConstraint ("FR" held here as "fr"); respelled, the end of the
// resynchronization then dropped "fr", whose delete rule deleted Paris.
func TestCaseOnlyKeyEditResync(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := caseCountryNode(t, kind, nil)
			b := caseCountryNode(t, kind, nil)
			seedFrance(t, a)
			syncBoth(t, a, b)
			tick()
			exec(t, a, "UPDATE countries SET code = 'FR' WHERE code = 'fr'")
			tick()
			if _, err := a.Purge(ctx, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			want := countryContents(t, a)
			mustSync(t, b, a.AsPeer())
			mustSync(t, b, a.AsPeer())
			wantCountries(t, "resync", want, a, b)
		})
	}
}
