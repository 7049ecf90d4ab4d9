package stats

import (
	"math"
	"testing"
	"time"
)

func TestPercentileInterpolatesBetweenClosestRanks(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3} // unsorted on purpose
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {50, 3}, {100, 5}, {25, 2}, {90, 4.6}, {99, 4.96}, {-5, 1}, {150, 5},
	} {
		if got := Percentile(xs, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, c.p, got, c.want)
		}
	}
	if xs[0] != 5 || xs[1] != 1 {
		t.Errorf("Percentile sorted its input: %v", xs)
	}
}

func TestPercentileOfDurations(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	for _, c := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2500 * time.Microsecond}, // the mean of the two middle values
		{ms(hundred...), 50, 50500 * time.Microsecond},
		{ms(hundred...), 99, 99010 * time.Microsecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
	} {
		if got := Percentile(c.in, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %s, want %s", c.in, c.p, got, c.want)
		}
	}
}

func TestSample(t *testing.T) {
	s := NewSample([]int{9, 7, 8})
	if s.Len() != 3 || s.Max() != 9 || s.Percentile(50) != 8 || s.Percentile(0) != 7 {
		t.Errorf("sample %+v: len %d, max %d, p50 %d, p0 %d", s, s.Len(), s.Max(), s.Percentile(50), s.Percentile(0))
	}
	var empty Sample[float64]
	if empty.Len() != 0 || empty.Max() != 0 || empty.Percentile(50) != 0 {
		t.Errorf("empty sample: len %d, max %v, p50 %v", empty.Len(), empty.Max(), empty.Percentile(50))
	}
}
