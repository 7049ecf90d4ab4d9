// Command bench measures the quality bars of docs/performance.md in one run, on one machine, and prints a
// table (stdout) with the median, min and max of each figure over several runs, its target and
// a verdict. `make bench` runs it against a local throwaway PostgreSQL (scripts/with-db.sh sets
// DATABASE_URL). Results are also written as JSON to .bench/results-<UTC time>.json and
// .bench/latest.json under the module root.
//
// Every run of every scenario gets a fresh migrated database (internal/testdb.Create), dropped
// afterwards, so runs never see each other's rows, queues or dead tuples. Runs are interleaved
// (run 1 of every scenario, then run 2, ...) so slow drift of the machine affects every figure
// alike. In-process components log to zap.NewNop(): logging would distort the timings.
//
// # Scenarios (-only takes a comma list of these names)
//
//   - baseline-single: raw PGMQ, one message at a time. The queue is pre-filled with
//     SendBatch (not timed); then 8 goroutines, each holding its own pooled connection (the
//     consumer's default concurrency), loop pgmq.Read(qty 1) + pgmq.Delete, each statement in
//     autocommit, until the queue is empty. Timed: first read to last delete; messages/s.
//   - baseline-batched: the same with pgmq.Read(qty 100) + pgmq.DeleteBatch per round.
//   - notify-rtt: one connection LISTENs; another runs SELECT pg_notify(...) in autocommit
//     (send and commit). Timed: from before the statement to the notification's receipt on
//     the listening connection, one ping at a time; p50/p99. This is the floor of any
//     notification-driven latency.
//   - throughput: the consumer in-process (service.New + Run, default configuration: hybrid,
//     concurrency 8, batch 64) with a no-op handler, on an orchestration_task_requests queue
//     pre-filled with valid task requests. Each message is claimed, hydrated (decoded and
//     validated), routed to the no-op handler and acknowledged. Timed: from Run to the queue
//     being empty; messages/s, and its ratio to the batched baseline (target ≥ 0.5×).
//   - throughput-polling: the same in polling mode (no LISTEN: the poller finds every message).
//   - latency-hybrid, latency-polling: the in-process consumer (default configuration, mode
//     hybrid or polling) while a sender sends one task request every 5 ms (200 messages/s) for
//     10 s, stamping time.Now() into the body (context.sent_at_ns) just before pgmq.Send. The
//     no-op handler records its start time minus the stamp. So the figure covers send+commit,
//     NOTIFY delivery (or the poll), dispatch, claim, hydration and routing; p50/p99 with the
//     NOTIFY round trip as the floor. The first 20 messages are a warm-up and not counted.
//   - e2e-linear, e2e-diamond: the real workflow engine in the in-process consumer (default
//     configuration) and an in-process no-op worker (worker SDK, LISTEN enabled, poll every
//     200 ms, concurrency 16, every callable returns 1). Tasks run one at a time (after 3
//     warm-up tasks), each with a distinct context; the linear p50 target is ≤ 5 ms. The figure is completed_at
//     (tasker.task_status, stamped by the engine with the wall clock of this same process in the
//     transaction that completes the task) minus the wall-clock time just before pgmq.Send of
//     the request; equivalently (completed_at − created_at) plus the request's queueing time
//     (created_at − send), which is also reported as "submit → task created". The JSON detail
//     and the progress line split each step's time into: consumer handler end → worker handler
//     start, worker handler start → consumer step handler start, and the step handler itself.
//   - saturation: the real consumer binary (built with go build into a temp dir, run as
//     `consumer run` with its own log file in that dir) and the in-process no-op worker.
//     N diamond tasks with distinct contexts are submitted in one pgmq.send_batch; timed from
//     before the send to the latest completed_at; tasks/s and steps/s (target ≥ 3,200
//     steps/s). The CPU time (user + system, from /proc) used meanwhile by the consumer
//     process, by its PostgreSQL backends, by this process (which hosts the worker) and by the
//     worker's backends is reported per step (targets ≤ 0.4 ms for the consumer and its
//     backends, ≤ 0.3 ms for the worker and its backends): it depends much less than rates on
//     what else the machine is doing. At the end, before SIGTERM, the consumer's peak resident
//     set (VmHWM in /proc/<pid>/status) is read: the peak RSS figure (target ≤ 64 MB, MB
//     meaning MiB). The JSON detail adds the queue depths and the database sessions' wait
//     events sampled during the run, the consumer's batch statistics (from its /metrics), the
//     tables read by sequential scans and the top statements of pg_stat_statements.
//   - saturation-plain: the same with a plain PGMQ worker instead of the SDK (plainworker.go:
//     16 loops of pgmq.read, then per dispatch one transaction of pgmq.send + pgmq.delete);
//     steps/s (target ≥ 1,600) and the CPU split.
//
// The machine line gives the load average at start and end: other work on the machine (a
// compiler, another test suite on the same PostgreSQL) distorts every figure but the CPU ones.
// -keep keeps the temp dir (binaries, consumer logs); it is also kept when a run fails.
// -cpuprofile profiles this process, which hosts the in-process consumer and worker (use it
// with -only, e.g. -only e2e-diamond or -only throughput).
//
// Connections: at most about 40 at once (each scenario closes its pools before the next).
//
// Exit status: 0 when every run completed, whether or not the targets were met (this is a
// measurement); 1 when a run failed or the benchmark was interrupted; 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Options are the command-line settings, recorded in the JSON results.
type Options struct {
	Runs            int      `json:"runs"`
	Quick           bool     `json:"quick"`
	Only            []string `json:"only,omitempty"`
	Keep            bool     `json:"keep,omitempty"`
	CPUProfile      string   `json:"cpuprofile,omitempty"`
	Messages        int      `json:"messages"`         // throughput scenarios
	Pings           int      `json:"pings"`            // notify-rtt
	Rate            int      `json:"rate_per_s"`       // latency scenarios
	LatencySeconds  float64  `json:"latency_seconds"`  // latency scenarios
	E2ETasks        int      `json:"e2e_tasks"`        // sequential workflow tasks per run
	SaturationTasks int      `json:"saturation_tasks"` // diamond tasks submitted at once
}

// scenario is one named measurement; run performs one run of it.
type scenario struct {
	name string
	run  func(ctx context.Context, e *env, run int) (runResult, error)
}

// runResult is what one run measured.
type runResult struct {
	values  map[string]float64 // figure key → value
	detail  map[string]any     // anything else worth keeping in the JSON
	summary string             // the progress line's tail
}

var scenarios = []scenario{
	{"baseline-single", runBaselineSingle},
	{"baseline-batched", runBaselineBatched},
	{"notify-rtt", runNotifyRTT},
	{"throughput", runThroughput},
	{"throughput-polling", runThroughputPolling},
	{"latency-hybrid", runLatencyHybrid},
	{"latency-polling", runLatencyPolling},
	{"e2e-linear", runE2ELinear},
	{"e2e-diamond", runE2EDiamond},
	{"saturation", runSaturation},
	{"saturation-plain", runSaturationPlain},
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	opts, jsonOut, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.CPUProfile != "" {
		f, err := os.Create(opts.CPUProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := benchmark(ctx, opts, jsonOut, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Options, string, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 3, "runs of each scenario (figures are the median, min and max over the runs); default 1 with -quick")
	quick := fs.Bool("quick", false, "a ~1 minute smoke version: fewer messages and tasks, shorter latency runs, 1 run")
	only := fs.String("only", "", "comma list of scenarios to run: "+strings.Join(scenarioNames(), ", "))
	keep := fs.Bool("keep", false, "keep the temp dir (the built binaries and the consumer's logs) and print its path")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (which hosts the in-process consumer and worker) to this file")
	jsonOut := fs.String("json-out", "", "also write the JSON results to this file (.bench/ under the module root is always written)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bench [-runs N] [-quick] [-only a,b] [-json-out FILE] [-keep] [-cpuprofile FILE]\n\nMeasures the figures of docs/performance.md; needs DATABASE_URL (make bench sets it).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, "", err
	}
	if fs.NArg() > 0 {
		return Options{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	runsSet := false
	fs.Visit(func(f *flag.Flag) { runsSet = runsSet || f.Name == "runs" })
	o := Options{Runs: *runs, Quick: *quick, Keep: *keep, CPUProfile: *cpuProfile, Messages: 20000, Pings: 1000, Rate: 200, LatencySeconds: 10, E2ETasks: 100, SaturationTasks: 1000}
	if *quick {
		o.Messages, o.Pings, o.LatencySeconds, o.E2ETasks, o.SaturationTasks = 5000, 300, 3, 30, 300
		if !runsSet {
			o.Runs = 1
		}
	}
	if o.Runs < 1 {
		return Options{}, "", fmt.Errorf("-runs must be at least 1, got %d", o.Runs)
	}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !slices.Contains(scenarioNames(), n) {
				return Options{}, "", fmt.Errorf("-only: unknown scenario %q (known: %s)", n, strings.Join(scenarioNames(), ", "))
			}
			o.Only = append(o.Only, n)
		}
	}
	return o, *jsonOut, nil
}

func (o Options) selected(name string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, name) }

func benchmark(ctx context.Context, opts Options, jsonOut string, stdout, stderr io.Writer) error {
	started := time.Now()
	e, err := newEnv(ctx, opts, stderr)
	if err != nil {
		return err
	}
	var allErrs []string
	defer func() { e.close(opts.Keep || len(allErrs) > 0) }()

	machine, err := describeMachine(ctx, e.admin, started)
	if err != nil {
		return fmt.Errorf("describe machine: %w", err)
	}
	machine.PGMQ = e.pgmq
	fmt.Fprintln(stderr, machine)
	if opts.selected("saturation") {
		t0 := time.Now()
		fmt.Fprint(stderr, "building the consumer binary … ")
		if _, err := e.binaries(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "done (%.1fs)\n", time.Since(t0).Seconds())
	}

	var todo []scenario
	for _, s := range scenarios {
		if opts.selected(s.name) {
			todo = append(todo, s)
		}
	}
	total := len(todo) * opts.Runs
	values := map[string][]float64{}
	errs := map[string][]string{}
	records := map[string][]RunRecord{}
	step := 0
	for run := 1; run <= opts.Runs && ctx.Err() == nil; run++ {
		for _, s := range todo {
			if ctx.Err() != nil {
				break
			}
			step++
			fmt.Fprintf(stderr, "[%d/%d] %s, run %d/%d … ", step, total, s.name, run, opts.Runs)
			t0 := time.Now()
			res, err := s.run(ctx, e, run)
			took := time.Since(t0)
			rec := RunRecord{Run: run, Seconds: took.Seconds(), Detail: res.detail}
			if err != nil {
				fmt.Fprintf(stderr, "FAILED after %.1fs: %v\n", took.Seconds(), err)
				msg := fmt.Sprintf("%s run %d: %v", s.name, run, err)
				errs[s.name] = append(errs[s.name], msg)
				allErrs = append(allErrs, msg)
				rec.Error = err.Error()
			} else {
				fmt.Fprintf(stderr, "%s (%.1fs)\n", res.summary, took.Seconds())
				rec.Values = map[string]any{}
				for k, v := range res.values {
					rec.Values[k] = finite(v)
					if rec.Values[k] != nil { // a figure with no samples has no value
						values[k] = append(values[k], v)
					}
				}
			}
			records[s.name] = append(records[s.name], rec)
		}
	}
	if ctx.Err() != nil {
		allErrs = append(allErrs, "interrupted")
	}
	wall := time.Since(started)
	machine.LoadAvgEnd = loadAverage()

	figs := buildFigures(figureDefs, values, errs, opts.selected)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, renderTable(tableRows(figs)))
	fmt.Fprintln(stdout, "ratio = median / target; ✓ met, ✗ missed. Latencies in ms; MB = MiB. Each figure: median, min and max over", opts.Runs, "run(s).")
	fmt.Fprintln(stdout, machine)
	fmt.Fprintf(stdout, "wall time: %.1fs\n", wall.Seconds())

	res := &Results{
		StartedAt: started.UTC().Format(time.RFC3339), WallSeconds: wall.Seconds(), Options: opts,
		Machine: machine, Figures: figs, Runs: records, Errors: allErrs, Notes: notes,
	}
	paths, err := writeJSON(res, filepath.Join(e.root, ".bench"), jsonOut, started)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintln(stdout, "results:", strings.Join(paths, ", "))
	if len(allErrs) > 0 {
		return fmt.Errorf("%d run(s) failed:\n  %s", len(allErrs), strings.Join(allErrs, "\n  "))
	}
	return nil
}

// notes explain in the JSON what each figure times.
var notes = map[string]string{
	"pgmq_single":         "8 goroutines, own pooled connection each, pgmq.read qty 1 + pgmq.delete per message (autocommit), pre-filled queue; messages / (first read .. last delete)",
	"pgmq_batched":        "as pgmq_single with pgmq.read qty 100 + pgmq.delete(bigint[]) per round",
	"notify_rtt":          "SELECT pg_notify in autocommit on one connection → WaitForNotification on a LISTEN connection; one at a time",
	"consumer_throughput": "in-process service, default config, no-op handlers, pre-filled orchestration_task_requests; messages / (Run .. queue empty)",
	"polling_throughput":  "as consumer_throughput, in polling mode",
	"latency":             "handler start − time.Now() taken just before pgmq.Send (same process, wall clock); 200 msg/s; first 20 messages not counted",
	"e2e":                 "task_status.completed_at (engine clock, same process) − wall clock just before pgmq.Send of the request; pickup = created_at − send",
	"saturation":          "N diamond tasks in one send_batch to the consumer binary; (max completed_at − time before the send); steps = sum(steps_total)",
	"saturation_cpu":      "user+system CPU (from /proc) of the consumer process and of the PostgreSQL backends by application_name (consumer*, bench-worker*) between the send and the end, per step",
	"e2e_per_step":        "dispatching handler end → worker handler start; worker handler start → consumer step handler start; step handler duration (all on this process's clock)",
	"consumer_rss":        "VmHWM of the consumer binary's process at the end of the saturation run, in MiB",
}
