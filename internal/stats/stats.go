// Package stats summarizes measured durations for dbsync's load test and
// its benchmark command.
package stats

import (
	"slices"
	"time"
)

// Sorted returns a sorted copy of ds.
func Sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// Percentile returns the p-quantile (0 < p ≤ 1) of sorted durations, the
// sample of rank round(p·n); 0 when there are none. p = 0.5 is the
// median (the lower middle sample of an even count).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
