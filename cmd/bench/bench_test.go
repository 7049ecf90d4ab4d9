package main

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMedianAndSummary(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd median = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("even median = %v, want 2.5", got)
	}
	s := summarize([]float64{9, 7, 8})
	if s != (summary{Median: 8, Min: 7, Max: 9}) {
		t.Errorf("summarize = %+v", s)
	}
	if s := summarize(nil); !math.IsNaN(s.Median) {
		t.Errorf("summarize(nil) = %+v, want NaN", s)
	}
}

func TestLatencies(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := latencies(ds)
	if l.N != 100 || math.Abs(l.P50-50.5) > 1e-9 || math.Abs(l.P99-99.01) > 1e-9 || l.Max != 100 || math.Abs(l.Mean-50.5) > 1e-9 {
		t.Errorf("latencies = %+v", l)
	}
	if l := latencies(nil); l.N != 0 || !math.IsNaN(l.P50) {
		t.Errorf("latencies(nil) = %+v", l)
	}
}

func TestFormatValue(t *testing.T) {
	cases := []struct {
		v    float64
		unit string
		want string
	}{
		{9499.6, "msg/s", "9,500 msg/s"},
		{1234567, "", "1,234,567"},
		{999, "", "999"},
		{0, "steps/s", "0 steps/s"},
		{1.234, "ms", "1.23 ms"},
		{12.34, "ms", "12.3 ms"},
		{1234.4, "ms", "1,234 ms"},
		{38.25, "MB", "38.2 MB"},
		{math.NaN(), "ms", "n/a"},
	}
	for _, c := range cases {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if got := groupThousands(-1234); got != "-1,234" {
		t.Errorf("groupThousands(-1234) = %q", got)
	}
}

func TestBuildFiguresTargetsAndVerdicts(t *testing.T) {
	defs := []figureDef{
		{Key: "base", Scenario: "a", Name: "baseline", Unit: "msg/s", Note: "baseline"},
		{Key: "tp", Scenario: "b", Name: "throughput", Unit: "msg/s", Target: &target{Op: ">=", Ref: "base", Factor: 0.5, Label: "batched"}},
		{Key: "lat", Scenario: "c", Name: "latency", Unit: "ms", Target: &target{Op: "<=", Value: 2}, Floor: "floor"},
		{Key: "floor", Scenario: "c", Name: "floor", Unit: "ms", Note: "floor"},
		{Key: "missing", Scenario: "d", Name: "missing", Unit: "ms", Target: &target{Op: "<=", Value: 1}},
		{Key: "skipped", Scenario: "e", Name: "not selected", Unit: "ms"},
	}
	values := map[string][]float64{
		"base":  {8000, 7800, 7600},
		"tp":    {4000, 3000, 5000},
		"lat":   {2.5, 3, 2.8},
		"floor": {0.2},
	}
	errs := map[string][]string{"d": {"d run 1: boom"}}
	figs := buildFigures(defs, values, errs, func(s string) bool { return s != "e" })
	if len(figs) != 5 {
		t.Fatalf("got %d figures, want 5 (the unselected one left out)", len(figs))
	}
	tp := figs[1]
	if *tp.Median != 4000 || *tp.Min != 3000 || *tp.Max != 5000 {
		t.Errorf("throughput summary = %v %v %v", *tp.Median, *tp.Min, *tp.Max)
	}
	if *tp.TargetVal != 3900 || !*tp.Met || math.Abs(*tp.Ratio-4000.0/3900) > 1e-9 {
		t.Errorf("throughput target %v met %v ratio %v", *tp.TargetVal, *tp.Met, *tp.Ratio)
	}
	if tp.Target != "≥ 0.5× batched (7,800)" {
		t.Errorf("throughput target text %q", tp.Target)
	}
	lat := figs[2]
	if *lat.Met || *lat.Ratio != 1.4 || *lat.FloorValue != 0.2 {
		t.Errorf("latency met %v ratio %v floor %v", *lat.Met, *lat.Ratio, *lat.FloorValue)
	}

	table := renderTable(tableRows(figs))
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) != 7 { // header, rule, 5 rows
		t.Fatalf("table has %d lines:\n%s", len(lines), table)
	}
	for _, want := range []string{
		"throughput | 4,000 msg/s | 3,000 msg/s | 5,000 msg/s | ≥ 0.5× batched (7,800)",
		"1.03× ✓",
		"1.40× ✗",
		"≤ 2.00 ms, floor 0.20 ms",
		"(baseline)",
		"ERROR: d run 1: boom",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// Columns line up: every " | " separator sits at the same rune offset on every row.
	sepCols := func(line string) []int {
		var cols []int
		r := []rune(line)
		for i := 0; i+2 < len(r); i++ {
			if string(r[i:i+3]) == " | " {
				cols = append(cols, i)
			}
		}
		return cols
	}
	want := sepCols(lines[0])
	for _, l := range append([]string{lines[0]}, lines[2:]...) {
		got := sepCols(l)
		if len(got) < len(want) || got[0] != want[0] || got[len(want)-1] != want[len(want)-1] {
			t.Errorf("misaligned row (separators at %v, header at %v):\n%s", got, want, table)
		}
	}
	if utf8.RuneCountInString(lines[1]) < utf8.RuneCountInString(strings.TrimRight(lines[0], " ")) {
		t.Errorf("rule shorter than header:\n%s", table)
	}
}

func TestRenderTablePadsShortRows(t *testing.T) {
	got := renderTable([][]string{{"a", "bb"}, {"ccc"}})
	want := "a   | bb\n----+---\nccc |\n"
	if got != want {
		t.Errorf("renderTable:\n%q\nwant\n%q", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	var sink strings.Builder
	o, _, err := parseFlags([]string{"-quick"}, &sink)
	if err != nil || o.Runs != 1 || o.Messages != 5000 {
		t.Errorf("-quick: %+v, %v", o, err)
	}
	o, _, err = parseFlags([]string{"-quick", "-runs", "3"}, &sink)
	if err != nil || o.Runs != 3 {
		t.Errorf("-quick -runs 3: %+v, %v", o, err)
	}
	o, out, err := parseFlags([]string{"-only", "throughput, notify-rtt", "-json-out", "x.json"}, &sink)
	if err != nil || len(o.Only) != 2 || !o.selected("notify-rtt") || o.selected("saturation") || out != "x.json" || o.Runs != 3 {
		t.Errorf("-only: %+v, %q, %v", o, out, err)
	}
	if _, _, err := parseFlags([]string{"-only", "nope"}, &sink); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown scenario: %v", err)
	}
	if _, _, err := parseFlags([]string{"-runs", "0"}, &sink); err == nil {
		t.Error("-runs 0 accepted")
	}
}
