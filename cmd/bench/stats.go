package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by linear interpolation between
// the closest ranks (the default of numpy and of most spreadsheets). xs need not be sorted and
// is not modified. An empty xs gives NaN.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return sortedPercentile(s, p)
}

func sortedPercentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	if lo == hi {
		return s[lo]
	}
	return s[lo] + (s[hi]-s[lo])*(rank-float64(lo))
}

// median is the 50th percentile: the middle value, or the mean of the two middle values.
func median(xs []float64) float64 { return percentile(xs, 50) }

// summary is the median, min and max of a figure's runs.
type summary struct {
	Median, Min, Max float64
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{math.NaN(), math.NaN(), math.NaN()}
	}
	return summary{Median: median(xs), Min: slices.Min(xs), Max: slices.Max(xs)}
}

// latencyStats are the percentiles of one run's latency samples, in milliseconds.
type latencyStats struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func latencies(ds []time.Duration) latencyStats {
	if len(ds) == 0 {
		return latencyStats{P50: math.NaN(), P99: math.NaN(), Max: math.NaN(), Mean: math.NaN()}
	}
	ms := make([]float64, len(ds))
	var sum float64
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
		sum += ms[i]
	}
	slices.Sort(ms)
	return latencyStats{N: len(ms), P50: sortedPercentile(ms, 50), P99: sortedPercentile(ms, 99),
		Max: ms[len(ms)-1], Mean: sum / float64(len(ms))}
}

// groupThousands writes n with commas between groups of three digits: 1234567 → "1,234,567".
func groupThousands(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	first := len(s) % 3
	if first == 0 {
		first = 3
	}
	b.WriteString(s[:first])
	for i := first; i < len(s); i += 3 {
		b.WriteByte(',')
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// formatValue writes a value in its unit: rates rounded to whole numbers with thousands
// separators, milliseconds with 2 significant decimals below 10, MB with one decimal.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	switch unit {
	case "ms":
		switch {
		case v < 10:
			return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
		case v < 100:
			return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
		default:
			return groupThousands(int64(math.Round(v))) + " ms"
		}
	case "MB":
		return strconv.FormatFloat(v, 'f', 1, 64) + " MB"
	case "":
		return groupThousands(int64(math.Round(v)))
	default:
		return groupThousands(int64(math.Round(v))) + " " + unit
	}
}
