package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the demo and checks what it prints: the conflicts bob's
// merge resolved and the converged state of the three databases.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"alice and bob registered",
		"bob synced: pushed 4 operation(s); pulled 1 version(s) (conflicts resolved: delete_update×1 update_update×1); at version 3",
		"alice synced: pulled 1 version(s); at version 3",
		"   Groceries\n     [ ] 12 eggs\n     [x] bread\n     [ ] butter\n     [x] milk\n   Hardware\n     [ ] nails\n",
		"server, alice and bob hold identical data",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n--- output:\n%s", want, got)
		}
	}
}
