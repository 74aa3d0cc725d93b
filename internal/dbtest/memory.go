package dbtest

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/go-dbsync/dbsync/internal/procmem"
)

// PeakGrowth runs fn and returns how much this process's peak resident
// memory (VmHWM) grew meanwhile: it first collects garbage, returns freed
// memory to the system and resets the peak. Call it from a test that is
// not parallel (Go runs those alone), or other tests' memory counts too.
// It skips the test where the peak cannot be read or reset (Linux only).
func PeakGrowth(t testing.TB, fn func()) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := procmem.ResetPeak(); err != nil {
		t.Skipf("cannot reset the peak resident memory: %v", err)
	}
	base, err := procmem.PeakRSS(0)
	if err != nil {
		t.Skipf("no peak resident memory here: %v", err)
	}
	fn()
	after, err := procmem.PeakRSS(0)
	if err != nil {
		t.Fatal(err)
	}
	return after - base
}
