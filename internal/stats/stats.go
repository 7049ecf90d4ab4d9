package stats

import (
	"math"
	"slices"
)

// Number is what a sample may hold: durations, counts and measured values.
type Number interface {
	~int | ~int32 | ~int64 | ~float64
}

// Sample is a sorted copy of observations, for reading several percentiles of one set without
// sorting it again.
type Sample[T Number] struct {
	sorted []T
}

// NewSample sorts a copy of xs; xs itself is not modified.
func NewSample[T Number](xs []T) Sample[T] {
	s := slices.Clone(xs)
	slices.Sort(s)
	return Sample[T]{sorted: s}
}

// Len returns the number of observations.
func (s Sample[T]) Len() int { return len(s.sorted) }

// Percentile returns the p-th percentile (p is clamped to [0, 100]), or zero for an empty
// sample. On integer types (time.Duration) the interpolated value is truncated.
func (s Sample[T]) Percentile(p float64) T {
	n := len(s.sorted)
	if n == 0 {
		return 0
	}
	rank := min(max(p, 0), 100) / 100 * float64(n-1)
	lo, hi := int(math.Floor(rank)), int(math.Ceil(rank))
	if lo == hi {
		return s.sorted[lo]
	}
	return s.sorted[lo] + T(float64(s.sorted[hi]-s.sorted[lo])*(rank-float64(lo)))
}

// Max returns the largest observation, or zero for an empty sample.
func (s Sample[T]) Max() T {
	if len(s.sorted) == 0 {
		return 0
	}
	return s.sorted[len(s.sorted)-1]
}

// Percentile returns the p-th percentile of xs (see Sample.Percentile); xs need not be sorted
// and is not modified.
func Percentile[T Number](xs []T, p float64) T { return NewSample(xs).Percentile(p) }
