package store

import (
	"context"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
)

// maxFound bounds the referenced keys a Settler remembers as present.
const maxFound = 1 << 16

// Settler gathers, for an apply written in parts (a chunked push, a
// pull's chunks), what VerifyReferences checks at its end, once every
// part is written: the rows the parts deleted, and their references to
// rows that were neither written by the same part nor in the database
// when the part was written. The rows written and their settled
// references are not kept, so memory holds what is unsettled, not every
// row of the apply. It remembers up to maxFound referenced keys found
// present, so that parts referencing the same rows query them once; a
// row deleted since is among the deleted rows checked at the end. The
// zero value is ready.
type Settler struct {
	left  Touched
	found map[*dbsync.Table]map[string]bool
	n     int
}

// Add settles what one part touched, after the part is written.
func (s *Settler) Add(ctx context.Context, db bun.IDB, tc *Touched) error {
	for t, keys := range tc.deleted {
		add(&s.left.deleted, t, setKeys(keys)...)
	}
	for parent, keys := range tc.refs {
		var ask []string
		for k := range keys {
			if !tc.written[parent][k] && !s.found[parent][k] {
				ask = append(ask, k)
			}
		}
		if len(ask) == 0 {
			continue
		}
		present, err := Existing(ctx, db, parent, ask)
		if err != nil {
			return err
		}
		for _, k := range ask {
			if !present[k] {
				add(&s.left.refs, parent, k)
				continue
			}
			if s.n >= maxFound {
				s.found, s.n = nil, 0
			}
			add(&s.found, parent, k)
			s.n++
		}
	}
	return nil
}

// Verify runs VerifyReferences on what is left to check.
func (s *Settler) Verify(ctx context.Context, db bun.IDB, reg *dbsync.Registry) error {
	return VerifyReferences(ctx, db, reg, &s.left)
}

// Check runs CheckReferences on what is left to check.
func (s *Settler) Check(ctx context.Context, db bun.IDB, reg *dbsync.Registry) error {
	return CheckReferences(ctx, db, reg, &s.left)
}
