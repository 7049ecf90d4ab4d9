package consumercli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/workflow"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "status TASK_UUID", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("status: want exactly one TASK_UUID")
	}
	id, err := uuid.Parse(fs.Arg(0))
	if err != nil {
		return usagef("status: %q is not a UUID", fs.Arg(0))
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		task, steps, err := workflow.GetTaskStatus(ctx, pool, id)
		if err != nil {
			return err
		}
		printTask(stdout, task, steps)
		return nil
	})
}

// printTask prints a task and its steps as a readable table.
func printTask(w io.Writer, task workflow.TaskStatus, steps []workflow.StepStatus) {
	fmt.Fprintf(w, "task %s  %s/%s@%s  state=%s  steps %d/%d complete, %d error\n",
		task.TaskUUID, task.Namespace, task.Name, task.Version, task.State, task.StepsComplete, task.StepsTotal, task.StepsError)
	fmt.Fprintf(w, "correlation_id %s  created %s", task.CorrelationID, task.CreatedAt.UTC().Format(time.RFC3339Nano))
	if task.CompletedAt != nil {
		fmt.Fprintf(w, "  completed %s (%s)", task.CompletedAt.UTC().Format(time.RFC3339Nano), task.CompletedAt.Sub(task.CreatedAt).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tATTEMPTS\tRESULT\tLAST ERROR")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", s.Name, s.State, s.Attempts, s.MaxAttempts, short(s.Result), short(s.LastError))
	}
	_ = tw.Flush()
}

// short renders JSON on one line, truncated for the table.
func short(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "-"
	}
	return textutil.Truncate(textutil.Printable(s), shortWidth)
}

// shortWidth is the widest value a table column shows, in bytes.
const shortWidth = 60
