package consumercli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tasker-systems/consumer/internal/textutil"
)

// Exit codes (see docs/operations.md).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a bad command line or configuration: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

var errHelp = errors.New("help requested")

const usage = `consumer: an event-driven PGMQ consumer that orchestrates DAG workflows.

Usage:
  consumer [run]                 migrate if needed, register templates, serve until signalled
  consumer migrate               install or upgrade PGMQ and the tasker schema
  consumer submit [flags]        enqueue a task request (--wait to wait for the outcome)
  consumer status TASK_UUID      show a task, its steps, attempts and results
  consumer dlq list              list dead letters
  consumer dlq replay MSG_ID...  re-enqueue dead letters on their source queue
  consumer version               print the version

Configuration is read from the environment (DATABASE_URL is required); see docs/configuration.md.
Run 'consumer COMMAND --help' for a command's flags.
`

// Run runs the command of args (without the program name) and returns the process exit code:
// 0 on success, 1 on a runtime failure, 2 for a usage or configuration error. Errors are
// printed on stderr, one line each.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	err := dispatch(ctx, args, stdout, stderr, version)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "consumer: "+textutil.OneLine(ue.msg))
		return exitUsage
	default:
		fmt.Fprintln(stderr, "consumer: "+textutil.OneLine(err.Error()))
		return exitFailure
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, version string) error {
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
