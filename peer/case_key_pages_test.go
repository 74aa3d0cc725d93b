package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestCaseOnlyKeyEditAcrossPages: the delete of "fr" and the write of
// "FR" of a case-only key edit are adjacent in the editing node's feed,
// but a page may end between them (BatchSize, MaxBatchBytes). Each page
// is its own batch of the apply: the respelling was not found, the
// delete rule deleted the cities of "fr" and their tombstones deleted
// them on the editing node too (or, the write first, the apply failed
// with ErrConstraint at every sync).
func TestCaseOnlyKeyEditAcrossPages(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, size := range []int{1, 2, 3} {
			t.Run(kind+"/"+string(rune('0'+size)), func(t *testing.T) {
				t.Parallel()
				a := caseCountryNode(t, kind, &peer.Config{BatchSize: size})
				b := caseCountryNode(t, kind, &peer.Config{BatchSize: size})
				c := caseCountryNode(t, kind, &peer.Config{BatchSize: size})
				seedFrance(t, a)
				syncBoth(t, a, b)
				syncBoth(t, b, c)
				tick()
				exec(t, a, "UPDATE countries SET code = 'FR' WHERE code = 'fr'")
				want := countryContents(t, a)
				syncBoth(t, a, b)
				syncBoth(t, b, c)
				syncBoth(t, a, b)
				wantCountries(t, "case-only edit", want, a, b, c)
			})
		}
	}
}

// TestCaseOnlyKeyEditRelayed: a node that respells a row in place records
// the delete of the old spelling and the write of the new together in its
// own feed, so that a third node reading it in small pages gets them in
// one page too. Before, the node recorded the delete first of the batch
// (a page of the relay ended between the two): the third node's delete
// rule deleted the cities, on every node.
func TestCaseOnlyKeyEditRelayed(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := caseCountryNode(t, kind, nil)
			b := caseCountryNode(t, kind, nil)
			c := caseCountryNode(t, kind, &peer.Config{BatchSize: 2})
			seedFrance(t, a)
			mustSync(t, b, a.AsPeer())
			mustSync(t, c, b.AsPeer())
			tick()
			insert(t, a, &Country{Code: "de", Name: "Germany"})
			exec(t, a, "UPDATE countries SET code = 'FR' WHERE code = 'fr'")
			want := countryContents(t, a)
			mustSync(t, b, a.AsPeer())
			wantCountries(t, "b", want, a, b)
			mustSync(t, c, b.AsPeer())
			wantCountries(t, "c", want, a, b, c)
		})
	}
}
