package workflow

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/internal/timeutil"
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

const readStepsSQL = `
	SELECT step_uuid, task_uuid, name, state, attempts, max_attempts, retryable, backoff_base, backoff_max, callable, initialization
	FROM tasker.workflow_steps WHERE step_uuid = ANY($1::uuid[])`

// updateStepsSQL applies the accepted results: each step $2[i] moves from state $3[i] with
// attempts $4[i] to state $5[i] with attempts $6[i], result $7[i], last_error $8[i] and
// next_retry_at $9[i], with its history row (reason $10[i]). It returns the steps that moved.
const updateStepsSQL = `
	WITH c AS (
	  SELECT * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[],
	                       $9::timestamptz[], $10::text[])
	    AS c(step_uuid, from_state, from_attempts, to_state, to_attempts, result, last_error, next_retry_at, reason)
	), u AS (
	  UPDATE tasker.workflow_steps s
	  SET state = c.to_state, attempts = c.to_attempts,
	      result = CASE WHEN c.result IS NULL THEN s.result ELSE c.result END,
	      last_error = CASE WHEN c.last_error IS NULL THEN s.last_error ELSE c.last_error END,
	      next_retry_at = c.next_retry_at, updated_at = $1::timestamptz
	  FROM c
	  WHERE s.step_uuid = c.step_uuid AND s.state = c.from_state AND s.attempts = c.from_attempts
	  RETURNING s.step_uuid, s.task_uuid, c.from_state, c.to_state, c.to_attempts, c.reason)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, task_uuid, from_state, to_state, to_attempts, reason, $1::timestamptz FROM u
	RETURNING step_uuid`

// parentResultsSQL returns the dependency_results of the steps $1 (direct parents only); a
// step without parents has no row.
const parentResultsSQL = `
	SELECT e.child_uuid, jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb))
	FROM tasker.workflow_step_edges e
	JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	WHERE e.child_uuid = ANY($1::uuid[])
	GROUP BY e.child_uuid`

// stepChange is the planned change of one accepted result.
type stepChange struct {
	item        int // index of the result in the batch
	step        *stepRow
	stepUUID    uuid.UUID
	from        string
	fromAttempt int
	to          string
	toAttempt   int
	result      json.RawMessage // set for completed
	lastError   json.RawMessage // set for failures
	nextRetryAt *time.Time
	reason      string
	retry       *outgoing
}

// ProcessStepResults records workers' step results inside tx (see docs/protocol.md), then
// finalizes their tasks; each accepted result's Final is its task's outcome after the batch.
//
// A result is accepted only when the step is enqueued or waiting_for_retry and its attempts
// equals the result's attempt; otherwise it is acknowledged and ignored (Accepted false, Action
// "ignored", Final nil, nothing changes). Results are weighed in batch order, so of two copies
// of one result in a batch the second is ignored. A result for a step that does not exist or
// does not belong to its TaskUUID is a *commands.PermanentError with reason "unknown_step" for
// that result alone.
//
// Enqueued counts every dispatch a result caused: the retry of the step itself and, for the
// first accepted result of each task in the batch, the steps of that task that became ready
// (also its Final.Enqueued).
//
// The batch costs three round trips whatever its size: the task locks and the steps; the
// step updates, the ready dispatch and the step counts of every task concerned; the sends,
// the dispatch log and the task states.
func (e *Engine) ProcessStepResults(ctx context.Context, tx pgx.Tx, results []messages.StepResult) ([]actor.Result[commands.StepProcessResult], error) {
	now := e.now()
	out := make([]actor.Result[commands.StepProcessResult], len(results))
	if len(results) == 0 {
		return out, nil
	}
	taskIDs := make([]uuid.UUID, len(results))
	stepIDs := make([]uuid.UUID, len(results))
	for i, r := range results {
		taskIDs[i], stepIDs[i] = r.TaskUUID, r.StepUUID
		out[i].Value = commands.StepProcessResult{TaskUUID: r.TaskUUID, StepUUID: r.StepUUID, Action: ActionIgnored}
	}
	tasks := map[uuid.UUID]*lockedTask{}
	steps := map[uuid.UUID]*stepRow{}
	b := newBatch()
	queueLockTasks(b, distinct(taskIDs), tasks)
	b.Queue(readStepsSQL, uuidArgs(distinct(stepIDs))).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			s := &stepRow{}
			if err := rows.Scan(&id, &s.taskUUID, &s.name, &s.state, &s.attempts, &s.maxAttempts,
				&s.retryable, &s.backoffBase, &s.backoffMax, &s.callable, &s.initialization); err != nil {
				return err
			}
			steps[id] = s
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("%d step result(s): read: %w", len(results), err)
	}

	// Weigh each result against the step as the results before it in the batch left it.
	var changes []*stepChange
	for i, res := range results {
		task, step := tasks[res.TaskUUID], steps[res.StepUUID]
		if task == nil || step == nil || step.taskUUID != res.TaskUUID {
			out[i].Err = commands.Permanent("unknown_step",
				fmt.Errorf("step result for step %s of task %s: no such step in that task", res.StepUUID, res.TaskUUID))
			continue
		}
		if (step.state != StepEnqueued && step.state != StepWaitingForRetry) || step.attempts != res.Attempt {
			e.logIgnored(res, step)
			continue
		}
		c, err := e.plan(i, res, task, step, now)
		if err != nil {
			out[i].Err = err
			continue
		}
		step.state, step.attempts = c.to, c.toAttempt
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return out, nil
	}

	sq := settleQuery{byTask: map[uuid.UUID]*settling{}}
	var (
		ids, retried             []uuid.UUID
		from, to, reasons        []string
		fromAttempts, toAttempts []int32
		resultsJSON, errorsJSON  []json.RawMessage
		retryAt                  []*time.Time
		updated                  = map[uuid.UUID]bool{}
		deps                     = map[uuid.UUID]map[string]json.RawMessage{}
	)
	for _, c := range changes {
		ids, from, to, reasons = append(ids, c.stepUUID), append(from, c.from), append(to, c.to), append(reasons, c.reason)
		fromAttempts, toAttempts = append(fromAttempts, int32(c.fromAttempt)), append(toAttempts, int32(c.toAttempt))
		resultsJSON, errorsJSON, retryAt = append(resultsJSON, c.result), append(errorsJSON, c.lastError), append(retryAt, c.nextRetryAt)
		if c.retry != nil {
			retried = append(retried, c.stepUUID)
		}
		sq.byTask[c.step.taskUUID] = &settling{task: tasks[c.step.taskUUID]}
	}
	b = &pgx.Batch{}
	b.Queue(updateStepsSQL, now, uuidArgs(ids), from, fromAttempts, to, toAttempts, resultsJSON, errorsJSON, retryAt, reasons).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			updated[id] = true
		}
		return rows.Err()
	})
	if len(retried) > 0 {
		b.Queue(parentResultsSQL, uuidArgs(retried)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id uuid.UUID
				var d map[string]json.RawMessage
				if err := rows.Scan(&id, &d); err != nil {
					return err
				}
				deps[id] = d
			}
			return rows.Err()
		})
	}
	e.queueSettle(b, &sq, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("%d step result(s): record: %w", len(results), err)
	}

	var settleList []*settling
	seen := map[uuid.UUID]bool{}
	for _, c := range changes {
		if !updated[c.stepUUID] {
			continue // cannot happen while every writer holds the task lock; like a late result
		}
		st := sq.byTask[c.step.taskUUID]
		if c.retry != nil {
			body, err := dispatchBody(st.task, c.stepUUID, c.step.name, c.step.callable, c.step.initialization,
				c.retry.attempt, c.step.maxAttempts, deps[c.stepUUID])
			if err != nil {
				return nil, err
			}
			c.retry.body = body
			st.extra = append(st.extra, *c.retry)
		}
		if !seen[c.step.taskUUID] {
			seen[c.step.taskUUID] = true
			settleList = append(settleList, st)
		}
	}
	// A task whose every result turned out not to apply may still have had steps moved by the
	// ready statement (only if a writer bypassed the lock): they must be sent all the same.
	for id, st := range sq.byTask {
		if !seen[id] && len(st.ready) > 0 {
			seen[id] = true
			settleList = append(settleList, st)
		}
	}
	if err := e.settle(ctx, tx, settleList, now); err != nil {
		return nil, fmt.Errorf("%d step result(s): %w", len(results), err)
	}

	first := map[uuid.UUID]bool{}
	for _, c := range changes {
		if !updated[c.stepUUID] {
			continue
		}
		st := sq.byTask[c.step.taskUUID]
		r := &out[c.item].Value
		r.Accepted = true
		r.Action = actionFor(c.to)
		if c.retry != nil {
			r.Enqueued++
		}
		if !first[c.step.taskUUID] {
			first[c.step.taskUUID] = true
			r.Enqueued += st.readySent
		}
		r.Final = &commands.TaskFinalizationResult{
			TaskUUID: st.task.uuid, State: st.state, Changed: st.changed, Enqueued: st.readySent,
		}
	}
	return out, nil
}

func actionFor(to string) string {
	switch to {
	case StepComplete:
		return ActionCompleted
	case StepWaitingForRetry:
		return ActionRetryScheduled
	default:
		return ActionFailed
	}
}

// plan decides what an awaited result does to its step: complete it, schedule a retry with
// its delay, or put it in error.
func (e *Engine) plan(i int, res messages.StepResult, task *lockedTask, step *stepRow, now time.Time) (*stepChange, error) {
	c := &stepChange{item: i, step: step, stepUUID: res.StepUUID, from: step.state, fromAttempt: step.attempts, toAttempt: step.attempts}
	status := res.Result.Status
	if status == messages.StatusUnknown {
		status = messages.StatusFailed
		if res.Result.Success {
			status = messages.StatusCompleted
		}
	}
	if status == messages.StatusCompleted {
		c.to = StepComplete
		c.result = res.Result.Result
		if len(c.result) == 0 {
			c.result = json.RawMessage("null")
		}
		c.reason = fmt.Sprintf("attempt %d completed", step.attempts)
		return c, nil
	}
	stepErr := res.Result.Error
	if stepErr == nil {
		stepErr = &messages.StepError{Message: "step " + status.String() + " without an error description"}
	}
	lastError, err := json.Marshal(stepErr)
	if err != nil {
		return nil, fmt.Errorf("step result %s of task %s: encode error: %w", res.StepUUID, res.TaskUUID, err)
	}
	c.lastError = lastError
	if status == messages.StatusFailed && stepErr.Retryable && step.retryable &&
		step.attempts < step.maxAttempts && !TaskFinished(task.state) {
		policy := template.Retry{Retryable: step.retryable, MaxAttempts: step.maxAttempts,
			BackoffBase: step.backoffBase, BackoffMax: step.backoffMax}
		delay := timeutil.CeilSeconds(policy.Backoff(step.attempts, res.Result.BackoffHintDuration(), e.rand))
		at := now.Add(time.Duration(delay) * time.Second)
		c.to, c.toAttempt, c.nextRetryAt = StepWaitingForRetry, step.attempts+1, &at
		c.reason = textutil.Truncate(fmt.Sprintf("attempt %d failed (%s); attempt %d dispatched with a %ds delay",
			step.attempts, stepErr.Message, c.toAttempt, delay), 500)
		c.retry = &outgoing{taskUUID: res.TaskUUID, stepUUID: res.StepUUID, attempt: c.toAttempt, delay: delay}
		return c, nil
	}
	c.to = StepError
	why := "not retryable"
	switch {
	case status == messages.StatusError:
		why = "status error"
	case stepErr.Retryable && step.retryable && step.attempts >= step.maxAttempts:
		why = fmt.Sprintf("no attempts left (max %d)", step.maxAttempts)
	case TaskFinished(task.state):
		why = "task " + task.state
	}
	c.reason = textutil.Truncate(fmt.Sprintf("attempt %d failed (%s): %s", step.attempts, why, stepErr.Message), 500)
	return c, nil
}

func (e *Engine) logIgnored(res messages.StepResult, step *stepRow) {
	e.log.Debug("step result ignored", zap.Stringer("task_uuid", res.TaskUUID), zap.Stringer("step_uuid", res.StepUUID),
		zap.String("step", step.name), zap.String("state", step.state), zap.Int("attempts", step.attempts),
		zap.Int("result_attempt", res.Attempt), zap.Stringer("status", res.Result.Status))
}
