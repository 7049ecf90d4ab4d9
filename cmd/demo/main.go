// Command demo shows the consumer at work in one command (make demo).
//
// It builds the consumer and the example worker into a temporary directory, starts both as
// processes against DATABASE_URL (the consumer migrates the database and registers
// testdata/templates; nothing is dropped or purged), submits task requests for every template
// with distinct contexts ({"n": 1…N} plus a per-run nonce, so a second run creates new tasks
// instead of duplicates), draws a progress bar on stderr while they run and prints a summary:
// per template the tasks, their outcomes (internal/outcome tells created, duplicate and
// dead-lettered requests apart), retries, the p50/p99 latency from the task's created_at to
// completed_at (tasker.task_status; percentiles as internal/stats defines them) and whether
// every step's result is the value the example worker must compute. Finally it stops both
// processes with SIGTERM and checks that they exit 0.
//
// The exit status is 0 when every task completed with the expected results and both processes
// stopped cleanly, 1 otherwise (a failed, dead-lettered, duplicate or unfinished task, a wrong
// result, a process that died), 2 for a usage error and 130 when interrupted.
//
// Usage:
//
//	DATABASE_URL=postgres://… go run ./cmd/demo [-per-template 20] [-timeout 2m]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Defaults and fixed timings.
const (
	PerTemplateDefault = 20
	TimeoutDefault     = 2 * time.Minute

	readyTimeout = time.Minute      // first start: migration and template registration included
	stopTimeout  = 45 * time.Second // above the processes' default 30s shutdown timeouts
	pollEvery    = 100 * time.Millisecond
	submitChunk  = 500 // task requests per pgmq.send_batch
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses the command line and runs the demo; it returns the exit status.
func run(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := &demo{stdout: stdout, stderr: stderr}
	fs.IntVar(&d.perTemplate, "per-template", PerTemplateDefault, "tasks to submit per template")
	fs.DurationVar(&d.timeout, "timeout", TimeoutDefault, "how long to wait for the tasks to finish")
	fs.StringVar(&d.templateDir, "templates", "", "template directory (default: testdata/templates of the module)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: DATABASE_URL=postgres://… go run ./cmd/demo [flags]   (or: make demo)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	case d.perTemplate < 1:
		fmt.Fprintf(stderr, "demo: -per-template must be at least 1, got %d\n", d.perTemplate)
		return exitUsage
	case d.timeout <= 0:
		fmt.Fprintf(stderr, "demo: -timeout must be positive, got %s\n", d.timeout)
		return exitUsage
	}
	d.databaseURL = strings.TrimSpace(os.Getenv("DATABASE_URL"))
	if d.databaseURL == "" {
		fmt.Fprintln(stderr, "demo: DATABASE_URL is not set. Run 'make demo', which starts a local PostgreSQL when needed, or set DATABASE_URL.")
		return exitUsage
	}

	code, err := d.run(ctx)
	if err != nil {
		d.progressDone()
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted")
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailure
	}
	return code
}
