// Package procmem reads a process's resident memory from /proc (Linux):
// the measure of dbsync's memory tests and of its benchmark command.
// Elsewhere its functions fail.
package procmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PeakRSS returns the peak resident set size (VmHWM) of process pid (0:
// this process), in bytes.
func PeakRSS(pid int) (int64, error) {
	proc := "self"
	if pid != 0 {
		proc = strconv.Itoa(pid)
	}
	raw, err := os.ReadFile("/proc/" + proc + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procmem: VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("procmem: no VmHWM in /proc/%s/status", proc)
}

// ResetPeak resets this process's peak resident set size to its current
// one (writes 5 to /proc/self/clear_refs), so that PeakRSS then measures
// what follows.
func ResetPeak() error { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }
