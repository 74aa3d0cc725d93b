package stats

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0.5, 3 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0.99, 5 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0.01, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(Sorted(tt.samples), tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.samples, tt.p, got, tt.want)
		}
	}
}

func TestSortedCopies(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	out := Sorted(in)
	if in[0] != 3 || out[0] != 1 || out[2] != 3 {
		t.Fatalf("Sorted(%v) = %v; the input must stay as it was", in, out)
	}
}
