package store

import (
	"context"

	"github.com/uptrace/bun"
)

// Unresolved returns what of tc an apply written in parts (a chunked
// push, a pull's chunks) still checks at its end with VerifyReferences,
// once its other parts are written: the rows tc deleted, and the
// references tc recorded to rows it did not write and the database does
// not hold now. The rows tc wrote and their settled references are left
// out, so memory holds what is unsettled, not every row of the apply.
func (tc *Touched) Unresolved(ctx context.Context, db bun.IDB) (*Touched, error) {
	out := &Touched{}
	for t, keys := range tc.deleted {
		add(&out.deleted, t, setKeys(keys)...)
	}
	for parent, keys := range tc.refs {
		var ask []string
		for k := range keys {
			if !tc.written[parent][k] {
				ask = append(ask, k)
			}
		}
		if len(ask) == 0 {
			continue
		}
		found, err := Existing(ctx, db, parent, ask)
		if err != nil {
			return nil, err
		}
		for _, k := range ask {
			if !found[k] {
				add(&out.refs, parent, k)
			}
		}
	}
	return out, nil
}

// Merge adds what o recorded to tc.
func (tc *Touched) Merge(o *Touched) {
	for t, keys := range o.written {
		add(&tc.written, t, setKeys(keys)...)
	}
	for t, keys := range o.deleted {
		add(&tc.deleted, t, setKeys(keys)...)
	}
	for t, keys := range o.refs {
		add(&tc.refs, t, setKeys(keys)...)
	}
}
