package procmem_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/go-dbsync/dbsync/internal/procmem"
)

// TestPeakRSS: the peak of this process, by pid or as 0, is positive and
// rises when the process touches more memory; a reset brings it down to
// about what is resident.
func TestPeakRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	self, err := procmem.PeakRSS(0)
	if err != nil || self <= 0 {
		t.Fatalf("PeakRSS(0): %d, %v", self, err)
	}
	if byPid, err := procmem.PeakRSS(os.Getpid()); err != nil || byPid < self {
		t.Fatalf("PeakRSS(pid): %d, %v; PeakRSS(0) %d", byPid, err, self)
	}
	big := make([]byte, 128<<20)
	for i := range big {
		big[i] = 1
	}
	after, err := procmem.PeakRSS(0)
	if err != nil || after < self+32<<20 {
		t.Fatalf("after touching 128 MiB: %d (before %d), %v", after, self, err)
	}
	runtime.KeepAlive(big)
	if _, err := procmem.PeakRSS(1 << 30); err == nil {
		t.Error("PeakRSS of a process that does not exist succeeded")
	}
	big = nil
	runtime.GC()
	debug.FreeOSMemory()
	if err := procmem.ResetPeak(); err != nil {
		t.Skipf("cannot reset: %v", err)
	}
	// Not all of what was touched goes back to the system (the race
	// detector's shadow of it stays): 128 MiB touched, at least 32 MiB
	// must leave the peak (64 MiB touched freed only 33 MB once).
	if reset, err := procmem.PeakRSS(0); err != nil || reset > after-32<<20 {
		t.Fatalf("after freeing the 128 MiB and a reset: %d (peak before %d), %v", reset, after, err)
	}
}
