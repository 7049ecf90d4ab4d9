package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/workflow"
)

func cmdSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("submit", "submit --namespace N --name T --version V --context '{...}' [--idempotency-key K] [--wait]", stderr)
	namespace := fs.String("namespace", "", "template namespace (required)")
	name := fs.String("name", "", "template name (required)")
	ver := fs.String("version", "", "template version (required)")
	taskContext := fs.String("context", "{}", "task context, a JSON object")
	key := fs.String("idempotency-key", "", "deduplicate requests with the same key for the same template")
	wait := fs.Bool("wait", false, "wait for the task to finish and print its outcome")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --wait: how long to wait")
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
	var probe map[string]any
	if err := json.Unmarshal([]byte(*taskContext), &probe); err != nil {
		return usagef("submit: --context must be a JSON object: %v", err)
	}
	req, err := messages.NewTaskRequest(messages.TaskRequestSpec{
		Namespace: *namespace, Name: *name, Version: *ver, Context: json.RawMessage(*taskContext),
		Initiator: "consumer-cli", SourceSystem: "cli", IdempotencyKey: *key,
	}, "consumer-cli", time.Now())
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	requestID, correlationID := req.RequestID, req.TaskRequest.CorrelationID
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		msgID, err := pgmq.Send(ctx, pool, messages.QueueTaskRequests, body, pgmq.SendOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "submitted request %s (msg_id %d, correlation_id %s)\n", requestID, msgID, correlationID)
		if !*wait {
			return nil
		}
		waitCtx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return waitForTask(waitCtx, pool, requestID, msgID, stdout)
	})
}

// waitForTask follows a request until its task finishes, or it turns out to be a duplicate or
// a dead letter.
func waitForTask(ctx context.Context, pool *pgxpool.Pool, requestID string, msgID int64, stdout io.Writer) error {
	started := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var taskUUID uuid.UUID
	for {
		if taskUUID == uuid.Nil {
			task, err := workflow.FindTaskByRequestID(ctx, pool, requestID)
			switch {
			case err == nil:
				taskUUID = task.TaskUUID
				fmt.Fprintf(stdout, "task %s created\n", taskUUID)
			case !errors.Is(err, workflow.ErrTaskNotFound):
				return err
			default:
				if done, err := requestSettledWithoutTask(ctx, pool, requestID, msgID, stdout); done || err != nil {
					return err
				}
			}
		}
		if taskUUID != uuid.Nil {
			task, steps, err := workflow.GetTaskStatus(ctx, pool, taskUUID)
			if err != nil {
				return err
			}
			if task.Finished() {
				printTask(stdout, task, steps)
				fmt.Fprintf(stdout, "finished in %s\n", time.Since(started).Round(time.Millisecond))
				if task.State != "complete" {
					return fmt.Errorf("task %s ended in state %s", task.TaskUUID, task.State)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for request %s: %w", requestID, ctx.Err())
		case <-tick.C:
		}
	}
}

// requestSettledWithoutTask reports a request that was consumed without creating a task: a
// dead letter (an error) or an acknowledged duplicate.
func requestSettledWithoutTask(ctx context.Context, pool *pgxpool.Pool, requestID string, msgID int64, stdout io.Writer) (bool, error) {
	var queued bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1)", msgID).Scan(&queued); err != nil {
		return false, fmt.Errorf("check request: %w", err)
	}
	if queued {
		return false, nil
	}
	var reason, detail string
	err := pool.QueryRow(ctx, `SELECT message->>'reason', message->>'error' FROM pgmq.q_orchestration_dlq
		WHERE message->>'source_queue' = $1 AND (message->>'source_msg_id')::bigint = $2`, messages.QueueTaskRequests, msgID).Scan(&reason, &detail)
	if err == nil {
		return true, fmt.Errorf("request dead-lettered (%s): %s", reason, detail)
	}
	// The task and the ack commit together, so a task committed after our first look is
	// visible now; look once more before calling it a duplicate.
	if _, err := workflow.FindTaskByRequestID(ctx, pool, requestID); err == nil {
		return false, nil
	}
	fmt.Fprintln(stdout, "request acknowledged as a duplicate: an equivalent task already exists (see the idempotency rules)")
	return true, nil
}
