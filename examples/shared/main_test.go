package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestShared runs the multi-user demo and checks what each device holds:
// bob's phone gets the shared list, never alice's private one, and loses
// the shared one when it is unshared; his take-over is refused.
func TestShared(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"bob-phone holds: nothing\nalice shared Groceries with bob\nbob-phone holds: Groceries [milk]\n",
		"alice-laptop holds: Diary [secret]; Groceries [bread milk]\n",
		"bob tried to make Groceries his: refused (1 row out of his scope)\n",
		"alice unshared Groceries; every device synced\nalice-phone holds: Diary [secret]; Groceries [bread milk]\nalice-laptop holds: Diary [secret]; Groceries [bread milk]\nbob-phone holds: nothing\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n--- output:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bob-phone holds: Diary") {
		t.Errorf("bob's phone held alice's private list:\n%s", got)
	}
}
