package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the demo (its server on loopback HTTP) and checks what it
// prints: the conflicts bob's merge resolved, what each device holds (the
// demo itself fails when a device's rows differ from the server's rows of
// its user), the refused take-over and the unshared list leaving bob's
// phone.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"alice-phone registered with alice's token: node 1, bound to user alice\n" +
			"alice-laptop registered with alice's token: node 2, bound to user alice\n" +
			"bob-phone registered with bob's token: node 3, bound to user bob\n",
		"   bob-phone holds:\n     Groceries (alice's, shared with bob)\n       [ ] bread\n       [ ] eggs\n       [ ] milk\n\n2.",
		"bob-phone synced: pushed 4 operation(s); pulled 1 version(s) (conflicts resolved: delete_update×1 update_update×1); at version 3",
		"alice-laptop synced: pulled 2 version(s); at version 3",
		"   bob-phone holds:\n     Groceries (alice's, shared with bob)\n       [ ] 12 eggs\n       [x] bread\n       [ ] butter\n       [x] milk\n     Hardware (bob's)\n       [ ] nails\n",
		"refused by the server (403 out_of_scope, 1 row)",
		"   alice-laptop holds:\n     Diary (alice's)\n       [ ] secret\n     Groceries (alice's)\n       [ ] 12 eggs\n",
		"   bob-phone holds:\n     Hardware (bob's)\n       [ ] nails\nevery device holds exactly its user's rows",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n--- output:\n%s", want, got)
		}
	}
	blocks := strings.Split(got, "   bob-phone holds:\n")[1:]
	if len(blocks) != 3 {
		t.Fatalf("bob's phone shown %d times, want 3:\n%s", len(blocks), got)
	}
	for _, b := range blocks {
		for line := range strings.Lines(b) {
			if !strings.HasPrefix(line, "     ") {
				break // the end of what bob's phone holds
			}
			if strings.Contains(line, "Diary") {
				t.Errorf("bob's phone held alice's private list:\n%s", got)
			}
		}
	}
}
