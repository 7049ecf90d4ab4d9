// Command consumer is the orchestration consumer: it serves the orchestration queues (run),
// installs its schema (migrate), and helps operators submit tasks, inspect them and handle dead
// letters. See `consumer --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes (SPEC §8).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usageError is a bad command line or configuration: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `consumer: an event-driven PGMQ consumer that orchestrates DAG workflows.

Usage:
  consumer [run]                 migrate if needed, register templates, serve until signalled
  consumer migrate               install or upgrade PGMQ and the tasker schema
  consumer submit [flags]        enqueue a task request (--wait to wait for the outcome)
  consumer status TASK_UUID      show a task, its steps, attempts and results
  consumer dlq list              list dead letters
  consumer dlq replay MSG_ID...  re-enqueue dead letters on their source queue
  consumer version               print the version

Configuration is read from the environment (DATABASE_URL is required); see the README.
Run 'consumer COMMAND --help' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs one command and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatchCommand(ctx, args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "consumer: "+oneLine(ue.msg))
		return exitUsage
	default:
		fmt.Fprintln(stderr, "consumer: "+oneLine(err.Error()))
		return exitFailure
	}
}

// oneLine folds a multi-line error (pgx lists every address it tried) into one line.
func oneLine(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return strings.Join(fields, "; ")
}

var errHelp = errors.New("help requested")

func dispatchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, rest := "run", args
	if len(args) > 0 {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "submit":
		return cmdSubmit(ctx, rest, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "consumer "+version)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return errHelp
	default:
		return usagef("unknown command %q (run 'consumer --help')", cmd)
	}
}
