package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/consumer/internal/stats"
)

// median is the 50th percentile of xs (stats.Percentile), or NaN when there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return stats.Percentile(xs, 50)
}

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
	s := stats.NewSample(ms)
	return latencyStats{N: s.Len(), P50: s.Percentile(50), P99: s.Percentile(99), Max: s.Max(), Mean: sum / float64(len(ms))}
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
