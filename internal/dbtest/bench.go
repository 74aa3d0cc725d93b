package dbtest

import (
	"syscall"
	"testing"
	"time"
)

// Variant is one way of doing a benchmark's work.
type Variant struct {
	Name  string
	Setup func() error // before each run, not measured; may be nil
	Run   func() error
}

// Interleave runs every variant once per iteration of b.Loop, in turn, so
// that they share the machine's load, and reports for each the best wall
// time and the best process CPU time (user + system: the CPU of a
// PostgreSQL server is not in it) per unit of work, as <name>-ns/unit and
// <name>-cpu-ns/unit, and for each variant after the first its ratios to
// the first, <name>/<first> (wall) and <name>/<first>-cpu.
func Interleave(b *testing.B, units int, unit string, variants []Variant) {
	b.Helper()
	wall := make([]time.Duration, len(variants))
	cpu := make([]time.Duration, len(variants))
	for b.Loop() {
		for i, v := range variants {
			b.StopTimer()
			if v.Setup != nil {
				if err := v.Setup(); err != nil {
					b.Fatalf("%s: %v", v.Name, err)
				}
			}
			b.StartTimer()
			cpu0, start := cpuTime(), time.Now()
			if err := v.Run(); err != nil {
				b.Fatalf("%s: %v", v.Name, err)
			}
			w, c := time.Since(start), cpuTime()-cpu0
			if wall[i] == 0 || w < wall[i] {
				wall[i] = w
			}
			if cpu[i] == 0 || c < cpu[i] {
				cpu[i] = c
			}
		}
	}
	for i, v := range variants {
		b.ReportMetric(float64(wall[i].Nanoseconds())/float64(units), v.Name+"-ns/"+unit)
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(units), v.Name+"-cpu-ns/"+unit)
		if i > 0 {
			b.ReportMetric(float64(wall[i])/float64(wall[0]), v.Name+"/"+variants[0].Name)
			if cpu[0] > 0 {
				b.ReportMetric(float64(cpu[i])/float64(cpu[0]), v.Name+"/"+variants[0].Name+"-cpu")
			}
		}
	}
	b.ReportMetric(0, "ns/op") // the loop times all variants together: meaningless
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
