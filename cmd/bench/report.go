package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// target is a quality bar (docs/performance.md). A relative target is factor × the median of another figure
// (the consumer's throughput against the batched baseline).
type target struct {
	Op     string  // ">=" or "<="
	Value  float64 // absolute bar, in the figure's unit (when Ref is empty)
	Ref    string  // key of the figure the bar is relative to
	Factor float64 // with Ref: the bar is Factor × Ref's median
	Label  string  // how Ref is named in the table ("batched")
}

// figureDef describes one row of the table.
type figureDef struct {
	Key      string
	Scenario string
	Name     string
	Unit     string
	Target   *target
	Floor    string // key of the figure shown as this one's floor (the raw NOTIFY round trip)
	Note     string // shown in the target column of rows without a target ("baseline", "floor")
}

// Figure is one measured figure with its runs, as written to the JSON results.
type Figure struct {
	Key        string    `json:"key"`
	Scenario   string    `json:"scenario"`
	Name       string    `json:"name"`
	Unit       string    `json:"unit"`
	Runs       []float64 `json:"runs"`
	Median     *float64  `json:"median,omitempty"`
	Min        *float64  `json:"min,omitempty"`
	Max        *float64  `json:"max,omitempty"`
	Target     string    `json:"target,omitempty"`       // as shown in the table
	TargetOp   string    `json:"target_op,omitempty"`    // ">=" or "<="
	TargetVal  *float64  `json:"target_value,omitempty"` // resolved bar in Unit
	Ratio      *float64  `json:"ratio,omitempty"`        // median / target value
	Met        *bool     `json:"met,omitempty"`
	FloorValue *float64  `json:"floor,omitempty"` // the floor's median, for latency figures
	Errors     []string  `json:"errors,omitempty"`
}

// figureDefs are the rows of the table, in order.
var figureDefs = []figureDef{
	{Key: "pgmq_single", Scenario: "baseline-single", Name: "raw PGMQ one at a time (read 1 + delete 1, 8 conns)", Unit: "msg/s", Note: "baseline"},
	{Key: "pgmq_batched", Scenario: "baseline-batched", Name: "raw PGMQ batched (read 100 + delete 100, 8 conns)", Unit: "msg/s", Note: "baseline"},
	{Key: "notify_rtt_p50", Scenario: "notify-rtt", Name: "raw NOTIFY round trip p50 (send+commit → receipt)", Unit: "ms", Note: "floor"},
	{Key: "notify_rtt_p99", Scenario: "notify-rtt", Name: "raw NOTIFY round trip p99", Unit: "ms", Note: "floor"},
	{Key: "consumer_throughput", Scenario: "throughput", Name: "consumer throughput, pre-filled queue, no-op handler", Unit: "msg/s",
		Target: &target{Op: ">=", Ref: "pgmq_batched", Factor: 0.5, Label: "batched"}},
	{Key: "polling_throughput", Scenario: "throughput-polling", Name: "consumer throughput, polling mode", Unit: "msg/s"},
	{Key: "latency_hybrid_p50", Scenario: "latency-hybrid", Name: "notify→handler p50, hybrid, 200 msg/s", Unit: "ms", Target: &target{Op: "<=", Value: 2}, Floor: "notify_rtt_p50"},
	{Key: "latency_hybrid_p99", Scenario: "latency-hybrid", Name: "notify→handler p99, hybrid, 200 msg/s", Unit: "ms", Target: &target{Op: "<=", Value: 5}, Floor: "notify_rtt_p99"},
	{Key: "latency_polling_p50", Scenario: "latency-polling", Name: "send→handler p50, polling, 200 msg/s", Unit: "ms", Floor: "notify_rtt_p50"},
	{Key: "latency_polling_p99", Scenario: "latency-polling", Name: "send→handler p99, polling, 200 msg/s", Unit: "ms", Floor: "notify_rtt_p99"},
	{Key: "linear_e2e_p50", Scenario: "e2e-linear", Name: "linear (4 steps) end-to-end p50", Unit: "ms", Target: &target{Op: "<=", Value: 5}},
	{Key: "linear_e2e_p99", Scenario: "e2e-linear", Name: "linear (4 steps) end-to-end p99", Unit: "ms"},
	{Key: "linear_pickup_p50", Scenario: "e2e-linear", Name: "  of which submit → task created, p50", Unit: "ms"},
	{Key: "diamond_e2e_p50", Scenario: "e2e-diamond", Name: "diamond (4 steps) end-to-end p50", Unit: "ms"},
	{Key: "diamond_e2e_p99", Scenario: "e2e-diamond", Name: "diamond (4 steps) end-to-end p99", Unit: "ms"},
	{Key: "diamond_pickup_p50", Scenario: "e2e-diamond", Name: "  of which submit → task created, p50", Unit: "ms"},
	{Key: "saturation_tasks", Scenario: "saturation", Name: "diamond at saturation (consumer binary), tasks", Unit: "tasks/s"},
	{Key: "saturation_steps", Scenario: "saturation", Name: "diamond at saturation (consumer binary), steps", Unit: "steps/s", Target: &target{Op: ">=", Value: 3200}},
	{Key: "saturation_cpu_consumer", Scenario: "saturation", Name: "  CPU per step: consumer process + its PG backends", Unit: "ms", Target: &target{Op: "<=", Value: 0.4}},
	{Key: "saturation_cpu_worker", Scenario: "saturation", Name: "  CPU per step: SDK worker (bench process) + its PG backends", Unit: "ms", Target: &target{Op: "<=", Value: 0.3}},
	{Key: "saturation_cpu_worker_db", Scenario: "saturation", Name: "    of which the SDK worker's PG backends", Unit: "ms", Note: "info"},
	{Key: "saturation_plain_steps", Scenario: "saturation-plain", Name: "diamond at saturation, plain PGMQ worker, steps", Unit: "steps/s", Target: &target{Op: ">=", Value: 1600}},
	{Key: "saturation_plain_cpu_consumer", Scenario: "saturation-plain", Name: "  CPU per step: consumer process + its PG backends", Unit: "ms", Note: "info"},
	{Key: "saturation_plain_cpu_worker", Scenario: "saturation-plain", Name: "  CPU per step: plain worker (bench process) + its PG backends", Unit: "ms", Note: "info"},
	{Key: "consumer_rss", Scenario: "saturation", Name: "consumer peak RSS (VmHWM, end of saturation run)", Unit: "MB", Target: &target{Op: "<=", Value: 64}},
}

// buildFigures turns the runs' values into figures, resolving relative targets and floors.
// values maps a figure key to its values, one per successful run; errs maps a scenario to the
// errors of its failed runs.
func buildFigures(defs []figureDef, values map[string][]float64, errs map[string][]string, selected func(string) bool) []Figure {
	medians := map[string]float64{}
	for k, v := range values {
		if len(v) > 0 {
			medians[k] = median(v)
		}
	}
	var out []Figure
	for _, d := range defs {
		if !selected(d.Scenario) {
			continue
		}
		f := Figure{Key: d.Key, Scenario: d.Scenario, Name: d.Name, Unit: d.Unit, Runs: values[d.Key], Errors: errs[d.Scenario]}
		if f.Runs == nil {
			f.Runs = []float64{}
		}
		if len(f.Runs) > 0 {
			s := summarize(f.Runs)
			f.Median, f.Min, f.Max = ptr(s.Median), ptr(s.Min), ptr(s.Max)
		}
		if d.Floor != "" {
			if v, ok := medians[d.Floor]; ok {
				f.FloorValue = ptr(v)
			}
		}
		if t := d.Target; t != nil {
			f.TargetOp = t.Op
			bar, ok := t.Value, true
			if t.Ref != "" {
				bar, ok = medians[t.Ref]
				bar *= t.Factor
			}
			sym := map[string]string{">=": "≥", "<=": "≤"}[t.Op]
			switch {
			case t.Ref != "" && ok:
				f.Target = fmt.Sprintf("%s %s× %s (%s)", sym, trimFloat(t.Factor), t.Label, formatValue(medians[t.Ref], ""))
			case t.Ref != "":
				f.Target = fmt.Sprintf("%s %s× %s (not measured)", sym, trimFloat(t.Factor), t.Label)
			default:
				f.Target = sym + " " + formatValue(bar, d.Unit)
			}
			if ok {
				f.TargetVal = ptr(bar)
				if f.Median != nil && bar > 0 {
					r := *f.Median / bar
					met := (t.Op == ">=" && r >= 1) || (t.Op == "<=" && r <= 1)
					f.Ratio, f.Met = ptr(r), &met
				}
			}
		} else {
			f.Target = d.Note
		}
		out = append(out, f)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// tableRows renders figures as rows of the stdout table.
func tableRows(figs []Figure) [][]string {
	rows := [][]string{{"figure", "median", "min", "max", "target", "ratio/verdict"}}
	for _, f := range figs {
		if f.Median == nil {
			verdict := "not measured"
			if len(f.Errors) > 0 {
				verdict = "ERROR: " + truncate(f.Errors[0], 60)
			}
			rows = append(rows, []string{f.Name, "—", "—", "—", f.Target, verdict})
			continue
		}
		tgt := f.Target
		if f.FloorValue != nil {
			if tgt != "" {
				tgt += ", "
			}
			tgt += "floor " + formatValue(*f.FloorValue, f.Unit)
		}
		verdict := "—"
		switch {
		case f.Ratio != nil && *f.Met:
			verdict = fmt.Sprintf("%.2f× ✓", *f.Ratio)
		case f.Ratio != nil:
			verdict = fmt.Sprintf("%.2f× ✗", *f.Ratio)
		case f.Target == "baseline" || f.Target == "floor":
			verdict = "(" + f.Target + ")"
		}
		if len(f.Errors) > 0 {
			verdict += fmt.Sprintf(" (%d run(s) failed)", len(f.Errors))
		}
		rows = append(rows, []string{f.Name, formatValue(*f.Median, f.Unit), formatValue(*f.Min, f.Unit),
			formatValue(*f.Max, f.Unit), tgt, verdict})
	}
	return rows
}

// renderTable lays rows out in columns separated by " | ", the first row being the header,
// followed by a rule. Widths count runes, so ≥, ✓ and × line up.
func renderTable(rows [][]string) string {
	if len(rows) == 0 {
		return ""
	}
	ncol := 0
	for _, r := range rows {
		ncol = max(ncol, len(r))
	}
	widths := make([]int, ncol)
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		var cells []string
		for i := range ncol {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			pad := widths[i] - utf8.RuneCountInString(c)
			// Numbers are right-aligned (columns 1-3), text left-aligned.
			if i >= 1 && i <= 3 {
				cells = append(cells, strings.Repeat(" ", pad)+c)
			} else {
				cells = append(cells, c+strings.Repeat(" ", pad))
			}
		}
		b.WriteString(strings.TrimRight(strings.Join(cells, " | "), " "))
		b.WriteByte('\n')
	}
	line(rows[0])
	var rule []string
	for _, w := range widths {
		rule = append(rule, strings.Repeat("-", w))
	}
	b.WriteString(strings.Join(rule, "-+-"))
	b.WriteByte('\n')
	for _, r := range rows[1:] {
		line(r)
	}
	return b.String()
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs         int    `json:"nproc"`
	CPUModel     string `json:"cpu_model,omitempty"`
	MemoryMB     int64  `json:"memory_mb"`
	OS           string `json:"os"`
	GoVersion    string `json:"go_version"`
	PostgreSQL   string `json:"postgresql"`
	PGVersionNum string `json:"postgresql_version"`
	PGMQ         string `json:"pgmq,omitempty"`
	Fsync        string `json:"fsync,omitempty"`
	SyncCommit   string `json:"synchronous_commit,omitempty"`
	OtherClients int    `json:"other_client_backends_at_start"`
	LoadAvg      string `json:"load_average_at_start"` // 1, 5, 15 minutes: other work on the machine distorts every figure
	LoadAvgEnd   string `json:"load_average_at_end,omitempty"`
	Date         string `json:"date"`
}

func (m Machine) String() string {
	s := fmt.Sprintf("machine: %d CPUs (%s), %s MB RAM, %s; %s; PostgreSQL %s (fsync=%s, synchronous_commit=%s, PGMQ %s); %s\n"+
		"load average %s at start", m.CPUs, m.CPUModel, groupThousands(m.MemoryMB), m.OS, m.GoVersion, m.PGVersionNum,
		m.Fsync, m.SyncCommit, m.PGMQ, m.Date, m.LoadAvg)
	if m.LoadAvgEnd != "" {
		s += ", " + m.LoadAvgEnd + " at end"
	}
	return s + fmt.Sprintf(" (1/5/15 min); %d other client connections to the server at start", m.OtherClients)
}

// describeMachine reads the description of the host and of the server of admin (the PGMQ
// flavour is filled in by the caller, from a migrated database).
func describeMachine(ctx context.Context, admin string, now time.Time) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(),
		Date: now.UTC().Format(time.RFC3339)}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.LoadAvg = loadAverage()
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		m.MemoryMB = kb / 1024
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return m, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT version(), current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'),
		(SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())`).
		Scan(&m.PostgreSQL, &m.PGVersionNum, &m.Fsync, &m.SyncCommit, &m.OtherClients)
	return m, err
}

// pgmqFlavour says which PGMQ a migrated database uses.
func pgmqFlavour(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) string {
	var v *string
	if err := db.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'pgmq'").Scan(&v); err == nil && v != nil {
		return "extension " + *v
	}
	return "SQL schema (no extension)"
}

// loadAverage returns the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], "/")
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Results is the JSON document written to .bench/.
type Results struct {
	StartedAt   string                 `json:"started_at"`
	WallSeconds float64                `json:"wall_seconds"`
	Options     Options                `json:"options"`
	Machine     Machine                `json:"machine"`
	Figures     []Figure               `json:"figures"`
	Runs        map[string][]RunRecord `json:"runs"`
	Errors      []string               `json:"errors,omitempty"`
	Notes       map[string]string      `json:"notes"`
}

// RunRecord is one run of one scenario.
type RunRecord struct {
	Run     int            `json:"run"`
	Seconds float64        `json:"seconds"`
	Values  map[string]any `json:"values,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// writeJSON writes res to dir/results-<timestamp>.json and dir/latest.json, and to extra when
// set. It returns the paths written.
func writeJSON(res *Results, dir, extra string, stamp time.Time) ([]string, error) {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := []string{
		filepath.Join(dir, "results-"+stamp.UTC().Format("20060102T150405Z")+".json"),
		filepath.Join(dir, "latest.json"),
	}
	if extra != "" {
		paths = append(paths, extra)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// finite replaces NaN and infinities (which JSON cannot carry) by nil.
func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}
