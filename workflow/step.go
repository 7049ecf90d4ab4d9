package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
)

// stepRow is a step as read under its task's lock.
type stepRow struct {
	taskUUID       uuid.UUID
	name           string
	state          string
	attempts       int
	maxAttempts    int
	retryable      bool
	backoffBase    time.Duration
	backoffMax     time.Duration
	callable       string
	initialization []byte
}

const readStepSQL = `
	SELECT task_uuid, name, state, attempts, max_attempts, retryable, backoff_base, backoff_max, callable, initialization
	FROM tasker.workflow_steps WHERE step_uuid = $1`

// failStepSQL moves a failed step from state $2 (with attempts $4) to state $3 (attempts $5),
// setting last_error and next_retry_at, and writes the history row; 1 row affected means done.
const failStepSQL = `
	WITH u AS (
	  UPDATE tasker.workflow_steps
	  SET state = $3::text, attempts = $5::int, last_error = $6::jsonb,
	      next_retry_at = $7::timestamptz, updated_at = $8::timestamptz
	  WHERE step_uuid = $1 AND state = $2::text AND attempts = $4::int
	  RETURNING step_uuid, task_uuid)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, task_uuid, $2::text, $3::text, $5::int, $9::text, $8::timestamptz FROM u`

// parentResultsSQL returns a step's dependency_results (direct parents only).
const parentResultsSQL = `
	SELECT coalesce(jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb)), '{}'::jsonb)
	FROM tasker.workflow_step_edges e
	JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	WHERE e.child_uuid = $1`

// ProcessStepResult records a worker's step result (SPEC §5.3) inside tx, then finalizes the
// task inline; the finalization's outcome is in the result's Final.
//
// A result is accepted only when the step is enqueued or waiting_for_retry and its attempts
// equals res.Attempt; otherwise it is acknowledged and ignored (Accepted false, Action
// "ignored", Final nil, nothing changes). A result for a step that does not exist or does not belong to
// res.TaskUUID is a *commands.PermanentError with reason "unknown_step".
//
// Enqueued counts every dispatch this result caused: the retry of the step itself and the
// children that became ready (the latter are also Final.Enqueued).
//
// A completed result costs one round trip (task lock, the step's compare-and-set, dispatch of
// the ready children, step counts) plus, when children became ready, the send and one more
// for the dispatch log and the task's state. A failure reads the step first, because the
// retry decision depends on it.
func (e *Engine) ProcessStepResult(ctx context.Context, tx pgx.Tx, res messages.StepResult) (commands.StepProcessResult, error) {
	now := e.now()
	status := res.Result.Status
	if status == messages.StatusUnknown {
		status = messages.StatusFailed
		if res.Result.Success {
			status = messages.StatusCompleted
		}
	}
	if status == messages.StatusCompleted {
		return e.completeStep(ctx, tx, res, now)
	}
	return e.failStep(ctx, tx, res, status, now)
}

// completeStepSQL is the compare-and-set of an accepted success: it only matches a step of
// the task that waits for exactly this attempt. The self-join reads the state it leaves (the
// task lock guarantees nobody else changes the row meanwhile).
const completeStepSQL = `
	WITH u AS (
	  UPDATE tasker.workflow_steps s
	  SET state = 'complete', result = $4::jsonb, next_retry_at = NULL, updated_at = $5::timestamptz
	  FROM tasker.workflow_steps old
	  WHERE s.step_uuid = $1 AND s.task_uuid = $2 AND s.attempts = $3::int
	    AND s.state IN ('enqueued', 'waiting_for_retry')
	    AND old.step_uuid = s.step_uuid
	  RETURNING s.step_uuid, s.task_uuid, old.state AS from_state, s.attempts)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, task_uuid, from_state, 'complete', attempts, 'attempt ' || attempts || ' completed', $5::timestamptz
	FROM u`

// completeStep is the hot path: the lock, the step's compare-and-set, the dispatch of the
// children it made ready and the step counts go in one round trip. Only a result that does not
// match (late, duplicate, unknown) costs a second one, to tell which.
func (e *Engine) completeStep(ctx context.Context, tx pgx.Tx, res messages.StepResult, now time.Time) (commands.StepProcessResult, error) {
	out := commands.StepProcessResult{TaskUUID: res.TaskUUID, StepUUID: res.StepUUID, Action: ActionIgnored}
	result := []byte(res.Result.Result)
	if len(result) == 0 {
		result = []byte("null")
	}
	var (
		task      lockedTask
		taskFound bool
		updated   bool
		sq        settleQuery
	)
	b := &pgx.Batch{}
	queueLockTask(b, res.TaskUUID, &task, &taskFound)
	b.Queue(completeStepSQL, res.StepUUID, res.TaskUUID, res.Attempt, result, now).Exec(func(ct pgconn.CommandTag) error {
		updated = ct.RowsAffected() == 1
		return nil
	})
	sq.queue(b, res.TaskUUID, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return out, fmt.Errorf("step result %s of task %s: record complete: %w", res.StepUUID, res.TaskUUID, err)
	}
	if updated {
		out.Accepted, out.Action = true, ActionCompleted
	} else if len(sq.ready) == 0 {
		return out, e.rejected(ctx, tx, res, taskFound)
	}
	// Accepted; or, only if some writer bypassed the task lock, steps the ready statement
	// moved, which must be sent whatever becomes of this result.
	fin, err := e.settle(ctx, tx, &task, &sq, nil, now)
	if err != nil {
		return out, fmt.Errorf("step result %s of task %s: %w", res.StepUUID, res.TaskUUID, err)
	}
	out.Enqueued = fin.dispatched
	out.Final = &commands.TaskFinalizationResult{
		TaskUUID: res.TaskUUID, State: fin.state, Changed: fin.changed, Enqueued: fin.readySent,
	}
	if !out.Accepted {
		return out, e.rejected(ctx, tx, res, taskFound)
	}
	return out, nil
}

// rejected explains a result that matched no waiting step: a *commands.PermanentError
// "unknown_step" when the step does not exist in that task, else nil (late or duplicate: the
// caller acknowledges and ignores it).
func (e *Engine) rejected(ctx context.Context, tx pgx.Tx, res messages.StepResult, taskFound bool) error {
	step, found, err := readStep(ctx, tx, res.StepUUID)
	if err != nil {
		return fmt.Errorf("step result %s of task %s: read step: %w", res.StepUUID, res.TaskUUID, err)
	}
	if !taskFound || !found || step.taskUUID != res.TaskUUID {
		return commands.Permanent("unknown_step",
			fmt.Errorf("step result for step %s of task %s: no such step in that task", res.StepUUID, res.TaskUUID))
	}
	e.logIgnored(res, step)
	return nil
}

func (e *Engine) logIgnored(res messages.StepResult, step stepRow) {
	e.log.Debug("step result ignored", zap.Stringer("task_uuid", res.TaskUUID), zap.Stringer("step_uuid", res.StepUUID),
		zap.String("step", step.name), zap.String("state", step.state), zap.Int("attempts", step.attempts),
		zap.Int("result_attempt", res.Attempt), zap.Stringer("status", res.Result.Status))
}

func scanStep(row pgx.Row, step *stepRow) (bool, error) {
	err := row.Scan(&step.taskUUID, &step.name, &step.state, &step.attempts, &step.maxAttempts,
		&step.retryable, &step.backoffBase, &step.backoffMax, &step.callable, &step.initialization)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	default:
		return false, err
	}
}

func readStep(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID) (stepRow, bool, error) {
	var step stepRow
	found, err := scanStep(tx.QueryRow(ctx, readStepSQL, stepUUID), &step)
	return step, found, err
}

// failStep records a failed or error result: it reads the step under the task lock first,
// because the outcome (retry with which delay, or error) depends on it.
func (e *Engine) failStep(ctx context.Context, tx pgx.Tx, res messages.StepResult, status messages.StepStatus, now time.Time) (commands.StepProcessResult, error) {
	out := commands.StepProcessResult{TaskUUID: res.TaskUUID, StepUUID: res.StepUUID, Action: ActionIgnored}
	var (
		task      lockedTask
		taskFound bool
		step      stepRow
		stepFound bool
	)
	b := &pgx.Batch{}
	queueLockTask(b, res.TaskUUID, &task, &taskFound)
	b.Queue(readStepSQL, res.StepUUID).QueryRow(func(row pgx.Row) (err error) {
		stepFound, err = scanStep(row, &step)
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return out, fmt.Errorf("step result %s of task %s: read: %w", res.StepUUID, res.TaskUUID, err)
	}
	if !taskFound || !stepFound || step.taskUUID != res.TaskUUID {
		return out, commands.Permanent("unknown_step",
			fmt.Errorf("step result for step %s of task %s: no such step in that task", res.StepUUID, res.TaskUUID))
	}
	if (step.state != StepEnqueued && step.state != StepWaitingForRetry) || step.attempts != res.Attempt {
		e.logIgnored(res, step)
		return out, nil
	}

	stepErr := res.Result.Error
	if stepErr == nil {
		stepErr = &messages.StepError{Message: "step " + status.String() + " without an error description"}
	}
	lastError, err := json.Marshal(stepErr)
	if err != nil {
		return out, fmt.Errorf("step result %s of task %s: encode error: %w", res.StepUUID, res.TaskUUID, err)
	}
	var (
		to          string
		newAttempts = step.attempts
		nextRetryAt *time.Time
		reason      string
		retry       *outgoing
	)
	if status == messages.StatusFailed && stepErr.Retryable && step.retryable &&
		step.attempts < step.maxAttempts && !TaskFinished(task.state) {
		policy := template.Retry{Retryable: step.retryable, MaxAttempts: step.maxAttempts,
			BackoffBase: step.backoffBase, BackoffMax: step.backoffMax}
		delay := ceilSeconds(policy.Backoff(step.attempts, res.Result.BackoffHintDuration(), e.rand))
		at := now.Add(time.Duration(delay) * time.Second)
		to, out.Action, newAttempts, nextRetryAt = StepWaitingForRetry, ActionRetryScheduled, step.attempts+1, &at
		reason = truncate(fmt.Sprintf("attempt %d failed (%s); attempt %d dispatched with a %ds delay",
			step.attempts, stepErr.Message, newAttempts, delay), 500)
		retry = &outgoing{stepUUID: res.StepUUID, attempt: newAttempts, delay: delay}
	} else {
		to, out.Action = StepError, ActionFailed
		why := "not retryable"
		switch {
		case status == messages.StatusError:
			why = "status error"
		case stepErr.Retryable && step.retryable && step.attempts >= step.maxAttempts:
			why = fmt.Sprintf("no attempts left (max %d)", step.maxAttempts)
		case TaskFinished(task.state):
			why = "task " + task.state
		}
		reason = truncate(fmt.Sprintf("attempt %d failed (%s): %s", step.attempts, why, stepErr.Message), 500)
	}

	var (
		updated bool
		deps    map[string]json.RawMessage
		sq      settleQuery
	)
	b = &pgx.Batch{}
	b.Queue(failStepSQL, res.StepUUID, step.state, to, step.attempts, newAttempts, lastError, nextRetryAt, now, reason).
		Exec(func(ct pgconn.CommandTag) error {
			updated = ct.RowsAffected() == 1
			return nil
		})
	if retry != nil {
		b.Queue(parentResultsSQL, res.StepUUID).QueryRow(func(row pgx.Row) error { return row.Scan(&deps) })
	}
	sq.queue(b, res.TaskUUID, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return out, fmt.Errorf("step result %s of task %s: record %s: %w", res.StepUUID, res.TaskUUID, to, err)
	}

	var extra []outgoing
	if !updated {
		// Cannot happen while every writer holds the task lock; treat like a late result.
		out.Action = ActionIgnored
	} else {
		out.Accepted = true
		if retry != nil {
			body, err := dispatchBody(&task, res.StepUUID, step.name, step.callable, step.initialization,
				retry.attempt, step.maxAttempts, deps)
			if err != nil {
				return out, err
			}
			retry.body = body
			extra = append(extra, *retry)
		}
	}
	fin, err := e.settle(ctx, tx, &task, &sq, extra, now)
	if err != nil {
		return out, fmt.Errorf("step result %s of task %s: %w", res.StepUUID, res.TaskUUID, err)
	}
	out.Enqueued = fin.dispatched
	out.Final = &commands.TaskFinalizationResult{
		TaskUUID: res.TaskUUID, State: fin.state, Changed: fin.changed, Enqueued: fin.readySent,
	}
	return out, nil
}
