package store

import (
	"slices"
	"strconv"
	"testing"
)

// TestHoldAncestors: the parents of held rows, transitively, each once,
// in trees, forests, diamonds and cycles.
func TestHoldAncestors(t *testing.T) {
	chain := func(n int) []Reference { // k(i) references k(i-1)
		var refs []Reference
		for i := 1; i < n; i++ {
			refs = append(refs, Reference{Child: key(i), Parent: key(i - 1)})
		}
		return refs
	}
	cases := []struct {
		name string
		refs []Reference
		held []string
		want []string
	}{
		{"none held", chain(3), nil, nil},
		{"leaf held", chain(4), []string{"k3"}, []string{"k0", "k1", "k2"}},
		{"middle held", chain(4), []string{"k1"}, []string{"k0"}},
		{"root held", chain(4), []string{"k0"}, nil},
		{"long chain", chain(20000), []string{"k19999"}, nil}, // want: all others (checked by count)
		{"two parents", []Reference{{Child: "c", Parent: "p1"}, {Child: "c", Parent: "p2"}, {Child: "p2", Parent: "g"}}, []string{"c"}, []string{"g", "p1", "p2"}},
		{"cycle", []Reference{{Child: "a", Parent: "b"}, {Child: "b", Parent: "a"}}, []string{"a"}, []string{"b"}},
		{"unrelated held", chain(3), []string{"x"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			held := map[string]bool{}
			for _, k := range tc.held {
				held[k] = true
			}
			got := HoldAncestors(tc.refs, func(k string) bool { return held[k] })
			slices.Sort(got)
			if tc.name == "long chain" {
				if len(got) != 19999 {
					t.Fatalf("got %d ancestors, want 19999", len(got))
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func key(i int) string { return "k" + strconv.Itoa(i) }
