package consumercli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/outcome"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/workflow"
)

// WaitTimeoutDefault is how long `submit --wait` waits without --timeout.
const WaitTimeoutDefault = 5 * time.Minute

// requester names the CLI in the requests it sends.
const requester = "consumer-cli"

func cmdSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("submit", "submit --namespace N --name T --version V --context '{...}' [--idempotency-key K] [--wait]", stderr)
	namespace := fs.String("namespace", "", "template namespace (required)")
	name := fs.String("name", "", "template name (required)")
	ver := fs.String("version", "", "template version (required)")
	taskContext := fs.String("context", "{}", "task context, a JSON object")
	key := fs.String("idempotency-key", "", "deduplicate requests with the same key for the same template")
	wait := fs.Bool("wait", false, "wait for the task to finish and print its outcome")
	timeout := fs.Duration("timeout", WaitTimeoutDefault, "with --wait: how long to wait")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("submit: unexpected argument %q", fs.Arg(0))
	}
	for _, f := range []struct{ flag, v string }{{"--namespace", *namespace}, {"--name", *name}, {"--version", *ver}} {
		if strings.TrimSpace(f.v) == "" {
			return usagef("submit: %s is required", f.flag)
		}
	}
	if messages.ValidateTaskContext(json.RawMessage(*taskContext)) != nil {
		return usagef("submit: --context must be a JSON object, not %s", textutil.Truncate(*taskContext, 40))
	}
	req, err := messages.NewTaskRequest(messages.TaskRequestSpec{
		Namespace: *namespace, Name: *name, Version: *ver, Context: json.RawMessage(*taskContext),
		Initiator: requester, SourceSystem: "cli", IdempotencyKey: *key,
	}, requester, time.Now())
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		var since int64
		if *wait {
			// Taken before the send: the request's dead letter, if any, lies above it.
			if since, err = dlq.Watermark(ctx, pool); err != nil {
				return err
			}
		}
		msgID, err := pgmq.Send(ctx, pool, messages.QueueTaskRequests, body, pgmq.SendOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "submitted request %s (msg_id %d, correlation_id %s)\n", req.RequestID, msgID, req.TaskRequest.CorrelationID)
		if !*wait {
			return nil
		}
		waitCtx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return waitForTask(waitCtx, pool, since, outcome.Request{RequestID: req.RequestID, MsgID: msgID}, stdout)
	})
}

// waitForTask follows a request until its task finishes, or it turns out to be a duplicate or
// a dead letter, and prints what became of it.
func waitForTask(ctx context.Context, pool *pgxpool.Pool, since int64, req outcome.Request, stdout io.Writer) error {
	started := time.Now()
	reported := false
	o, err := outcome.Wait(ctx, pool, since, req, func(o outcome.Outcome) bool {
		if o.Kind == outcome.Created && !reported {
			fmt.Fprintf(stdout, "task %s created\n", o.Task.TaskUUID)
			reported = true
		}
		return o.Settled()
	})
	if err != nil {
		return err
	}
	switch o.Kind {
	case outcome.DeadLettered:
		return fmt.Errorf("request dead-lettered (%s): %s", o.DeadLetter.Reason, o.DeadLetter.Error)
	case outcome.Duplicate:
		fmt.Fprintln(stdout, "request acknowledged as a duplicate: an equivalent task already exists (see the idempotency rules)")
		return nil
	}
	task, steps, err := workflow.GetTaskStatus(ctx, pool, o.Task.TaskUUID)
	if err != nil {
		return err
	}
	printTask(stdout, task, steps)
	fmt.Fprintf(stdout, "finished in %s\n", time.Since(started).Round(time.Millisecond))
	if task.State != workflow.TaskComplete {
		return fmt.Errorf("task %s ended in state %s", task.TaskUUID, task.State)
	}
	return nil
}
