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
	"strings"
	"syscall"
	"time"

	"github.com/tasker-systems/consumer/internal/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program: 0 when every row passed, 1 when one failed, 2 for bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated scenario names or prefixes to run (default all): "+scenarioNames())
	requests := fs.Int("requests", 0, fmt.Sprintf("valid task requests of a full-size scenario, others scale from it (0: %d, %d with -short)", RequestsDefault, RequestsShortDefault))
	keep := fs.Bool("keep", false, "keep the scenario databases")
	short := fs.Bool("short", false, "the reduced set that the Go test runs: fewer faults and requests")
	restart := fs.Bool("restart", true, "run the PostgreSQL restart scenarios (local cluster only)")
	seed := fs.Uint64("seed", 0, "seed of the random choices (0: random; printed)")
	parallel := fs.Int("parallel", ParallelDefault, "scenarios run at once (the restarts always run alone)")
	quiet := fs.Bool("q", false, "no progress lines")
	logLevel := fs.String("log-level", LogLevelDefault, "LOG_LEVEL of the consumer and worker processes")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chaos [flags]   (DATABASE_URL names the server; see `go doc ./cmd/chaos`)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *requests < 0 || *parallel < 1 {
		fmt.Fprintf(stderr, "chaos: -requests must not be negative and -parallel must be at least 1\n")
		return 2
	}
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		admin = os.Getenv("TEST_DATABASE_URL")
	}
	if admin == "" {
		fmt.Fprintln(stderr, "chaos: DATABASE_URL is not set (run `make chaos`, which starts a local PostgreSQL)")
		return 2
	}
	var names []string
	if *only != "" {
		names = strings.Split(*only, ",")
		for _, n := range names {
			if !knownScenario(strings.TrimSpace(n)) {
				fmt.Fprintf(stderr, "chaos: -only %q matches no scenario (%s)\n", n, scenarioNames())
				return 2
			}
		}
	}
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	opts := Options{
		Requests: *requests, Short: *short, Restart: *restart, RestartSkipReason: "-restart=false",
		Keep: *keep, Only: names, Seed: *seed, Parallel: *parallel, LogLevel: *logLevel,
		LogDir: filepath.Join(root, ".chaos", time.Now().Format("20060102-150405")),
	}
	if !*quiet {
		opts.Progress = stdout
	}
	_, failed, err := runSuite(ctx, admin, opts, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// runSuite builds, runs and reports the suite; it reports whether a row failed.
func runSuite(ctx context.Context, admin string, opts Options, out io.Writer) ([]*Row, bool, error) {
	start := time.Now()
	s, err := NewSuite(ctx, admin, opts)
	if err != nil {
		return nil, false, err
	}
	defer s.Close()
	s.progress("seed %d, logs in %s", s.opts.Seed, s.opts.LogDir)
	rows := s.Run(ctx)
	fmt.Fprintf(out, "\nchaos suite (seed %d, %s, %s):\n\n", s.opts.Seed, mode(s.opts), time.Since(start).Round(time.Second))
	printTable(out, rows)
	own, server := s.PeakConnections()
	fmt.Fprintf(out, "\npeak connections: %d to the scenario databases, %d to the server (everyone's)\n", own, server)
	printDetails(out, rows)
	failed, dlqValid := false, 0
	for _, r := range rows {
		if r != nil {
			failed = failed || r.Failed()
			dlqValid += r.DLQValid
		}
	}
	var caveat string
	if dlqValid > 0 {
		caveat = fmt.Sprintf(" (but %d valid request(s) were dead-lettered instead of run: see the notes)", dlqValid)
	}
	if failed {
		fmt.Fprintf(out, "\nFAIL: see the evidence above%s; logs are in %s\n", caveat, s.opts.LogDir)
	} else {
		fmt.Fprintf(out, "\nPASS: zero lost and zero duplicated in every row%s; logs are in %s\n", caveat, s.opts.LogDir)
	}
	return rows, failed, nil
}

func mode(o Options) string {
	if o.Short {
		return fmt.Sprintf("short, %d requests", o.Requests)
	}
	return fmt.Sprintf("full, %d requests", o.Requests)
}

func scenarioNames() string {
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.name)
	}
	return strings.Join(names, ", ")
}

func knownScenario(prefix string) bool {
	for _, sc := range scenarios() {
		if prefix != "" && strings.HasPrefix(sc.name, prefix) {
			return true
		}
	}
	return false
}
