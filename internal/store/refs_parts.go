package store

import (
	"context"

	"github.com/uptrace/bun"
)

// Unresolved returns the references tc recorded to rows it did not write
// and the database does not hold now: what an apply written in parts (a
// chunked push) checks at its end with VerifyReferences, once its other
// parts are written. The rows tc wrote and deleted are left out.
func (tc *Touched) Unresolved(ctx context.Context, db bun.IDB) (*Touched, error) {
	out := &Touched{}
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
