package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// Task states (SPEC §4.3).
const (
	TaskPending         = "pending"
	TaskStepsInProcess  = "steps_in_process"
	TaskWaitingForRetry = "waiting_for_retry"
	TaskComplete        = "complete"
	TaskError           = "error"
	TaskCancelled       = "cancelled"
)

// Step states (SPEC §4.3).
const (
	StepPending         = "pending"
	StepEnqueued        = "enqueued"
	StepWaitingForRetry = "waiting_for_retry"
	StepComplete        = "complete"
	StepError           = "error"
	StepCancelled       = "cancelled"
)

// Actions reported in commands.StepProcessResult.Action.
const (
	ActionCompleted      = "completed"       // the step completed
	ActionRetryScheduled = "retry_scheduled" // the step failed and its next attempt was dispatched with a delay
	ActionFailed         = "failed"          // the step is in error for good
	ActionIgnored        = "ignored"         // late, duplicated or for a finished step: nothing changed
)

// TaskFinished reports whether a task state is final (complete, error or cancelled).
func TaskFinished(state string) bool {
	return state == TaskComplete || state == TaskError || state == TaskCancelled
}

// EngineOptions configures an Engine. The zero value is usable.
type EngineOptions struct {
	// Logger receives debug lines for ignored results and similar; nil discards them.
	Logger *zap.Logger
	// Now is the clock for the timestamps the engine writes; nil means time.Now.
	Now func() time.Time
	// Rand returns values in [0, 1) for retry jitter and must be safe for concurrent use;
	// nil means math/rand/v2.Float64.
	Rand func() float64
}

// Engine creates tasks, records step results and finalizes tasks. It implements the actor's
// TaskHandler, StepHandler and FinalizationHandler; one Engine is safe for concurrent use by
// any number of handlers.
type Engine struct {
	log       *zap.Logger
	now       func() time.Time
	rand      func() float64
	templates *templateCache
}

var (
	_ actor.TaskHandler         = (*Engine)(nil)
	_ actor.StepHandler         = (*Engine)(nil)
	_ actor.FinalizationHandler = (*Engine)(nil)
)

// NewEngine returns an Engine; nil options get their defaults.
func NewEngine(opts EngineOptions) *Engine {
	e := &Engine{log: opts.Logger, now: opts.Now, rand: opts.Rand, templates: newTemplateCache()}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.rand == nil {
		e.rand = rand.Float64
	}
	return e
}

// Handlers returns the engine as the actor's three handlers.
func (e *Engine) Handlers() actor.Handlers {
	return actor.Handlers{Task: e, Step: e, Finalization: e}
}

// lockedTask is the task row as read under its row lock.
type lockedTask struct {
	uuid          uuid.UUID
	correlationID uuid.UUID
	namespace     string
	name          string
	version       string
	state         string
	context       []byte
}

// lockTaskSQL locks the task row; handlers of one task queue up here. Keep it a statement of
// its own: a statement that waited for the lock still reads other tables from its old
// snapshot, the next statement sees what the previous lock holder committed.
const lockTaskSQL = `
	SELECT correlation_id, namespace, name, version, state, context
	FROM tasker.workflow_tasks WHERE task_uuid = $1 FOR UPDATE`

// queueLockTask queues the lock into b; found reports whether the task exists.
func queueLockTask(b *pgx.Batch, taskUUID uuid.UUID, task *lockedTask, found *bool) {
	task.uuid = taskUUID
	b.Queue(lockTaskSQL, taskUUID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&task.correlationID, &task.namespace, &task.name, &task.version, &task.state, &task.context)
		switch {
		case err == nil:
			*found = true
			return nil
		case errors.Is(err, pgx.ErrNoRows):
			*found = false
			return nil
		default:
			return fmt.Errorf("lock task: %w", err)
		}
	})
}

// readyStep is a step moved from pending to enqueued by the ready statement, with what its
// dispatch needs.
type readyStep struct {
	stepUUID          uuid.UUID
	name              string
	callable          string
	initialization    []byte
	maxAttempts       int
	dependencyResults map[string]json.RawMessage
}

// readySQL dispatches (marks enqueued, attempt 1, with history) every pending step of an
// unfinished task whose parents are all complete, and returns what the dispatch messages need,
// in declaration order. The caller must send a message for every returned row.
const readySQL = `
	WITH ready AS (
	  SELECT s.step_uuid
	  FROM tasker.workflow_steps s
	  WHERE s.task_uuid = $1 AND s.state = 'pending'
	    AND EXISTS (SELECT 1 FROM tasker.workflow_tasks t
	                WHERE t.task_uuid = $1 AND t.state IN ('pending', 'steps_in_process', 'waiting_for_retry'))
	    AND NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e
	                    JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	                    WHERE e.child_uuid = s.step_uuid AND p.state <> 'complete')
	), moved AS (
	  UPDATE tasker.workflow_steps s
	  SET state = 'enqueued', attempts = 1, next_retry_at = NULL, updated_at = $2
	  FROM ready r
	  WHERE s.step_uuid = r.step_uuid AND s.state = 'pending'
	  RETURNING s.step_uuid, s.name, s.position, s.callable, s.initialization, s.max_attempts
	), history AS (
	  INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	  SELECT m.step_uuid, $1, 'pending', 'enqueued', 1, 'dependencies complete: dispatched attempt 1', $2
	  FROM moved m
	)
	SELECT m.step_uuid, m.name, m.callable, m.initialization, m.max_attempts,
	       (SELECT coalesce(jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb)), '{}'::jsonb)
	        FROM tasker.workflow_step_edges e
	        JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	        WHERE e.child_uuid = m.step_uuid)
	FROM moved m
	ORDER BY m.position`

// stepCounts counts a task's steps by state.
type stepCounts struct {
	total, pending, enqueued, waiting, complete, errored, cancelled int
}

const countsSQL = `
	SELECT count(*)::int,
	       count(*) FILTER (WHERE state = 'pending')::int,
	       count(*) FILTER (WHERE state = 'enqueued')::int,
	       count(*) FILTER (WHERE state = 'waiting_for_retry')::int,
	       count(*) FILTER (WHERE state = 'complete')::int,
	       count(*) FILTER (WHERE state = 'error')::int,
	       count(*) FILTER (WHERE state = 'cancelled')::int
	FROM tasker.workflow_steps WHERE task_uuid = $1`

// settleQuery holds the results of the ready and counts statements of one batch.
type settleQuery struct {
	ready  []readyStep
	counts stepCounts
}

// queue appends the ready and counts statements to b. They must come after every statement
// of the batch that changes steps.
func (s *settleQuery) queue(b *pgx.Batch, taskUUID uuid.UUID, now time.Time) {
	b.Queue(readySQL, taskUUID, now).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var r readyStep
			var deps []byte
			if err := rows.Scan(&r.stepUUID, &r.name, &r.callable, &r.initialization, &r.maxAttempts, &deps); err != nil {
				return fmt.Errorf("dispatch ready steps: %w", err)
			}
			if err := json.Unmarshal(deps, &r.dependencyResults); err != nil {
				return fmt.Errorf("dispatch ready steps: step %s: dependency results: %w", r.stepUUID, err)
			}
			s.ready = append(s.ready, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("dispatch ready steps: %w", err)
		}
		return nil
	})
	b.Queue(countsSQL, taskUUID).QueryRow(func(row pgx.Row) error {
		c := &s.counts
		if err := row.Scan(&c.total, &c.pending, &c.enqueued, &c.waiting, &c.complete, &c.errored, &c.cancelled); err != nil {
			return fmt.Errorf("count steps: %w", err)
		}
		return nil
	})
}

// outgoing is one step dispatch to send.
type outgoing struct {
	stepUUID uuid.UUID
	attempt  int
	delay    int32 // whole seconds
	body     json.RawMessage
}

// dispatchBody builds the SPEC §5.2 message.
func dispatchBody(task *lockedTask, stepUUID uuid.UUID, stepName, callable string, initialization []byte,
	attempt, maxAttempts int, deps map[string]json.RawMessage) (json.RawMessage, error) {
	if deps == nil {
		deps = map[string]json.RawMessage{}
	}
	if len(initialization) == 0 {
		initialization = []byte("{}")
	}
	ctxJSON := task.context
	if len(ctxJSON) == 0 {
		ctxJSON = []byte("{}")
	}
	b, err := json.Marshal(messages.StepDispatch{
		TaskUUID:          task.uuid,
		StepUUID:          stepUUID,
		CorrelationID:     task.correlationID,
		Namespace:         task.namespace,
		TaskName:          task.name,
		TaskVersion:       task.version,
		StepName:          stepName,
		Handler:           messages.HandlerSpec{Callable: callable, Initialization: initialization},
		Attempt:           attempt,
		MaxAttempts:       maxAttempts,
		TaskContext:       ctxJSON,
		DependencyResults: deps,
	})
	if err != nil {
		return nil, fmt.Errorf("encode dispatch of step %s: %w", stepUUID, err)
	}
	return b, nil
}

// settleOutcome is what settling a task did.
type settleOutcome struct {
	dispatched int    // messages sent (retries included)
	readySent  int    // of which newly ready steps
	state      string // the task's state afterwards
	changed    bool
}

// settle finishes a handler after its batch ran the settle statements: it sends the dispatches
// (extra ones such as a retry, then the newly ready steps), records them in the dispatch log,
// decides the task's state and writes it (with history, and cancelling unreachable steps when
// the task fails), in as few round trips as possible.
func (e *Engine) settle(ctx context.Context, tx pgx.Tx, task *lockedTask, sq *settleQuery, extra []outgoing, now time.Time) (settleOutcome, error) {
	out := settleOutcome{state: task.state}
	sends := extra
	for _, r := range sq.ready {
		body, err := dispatchBody(task, r.stepUUID, r.name, r.callable, r.initialization, 1, r.maxAttempts, r.dependencyResults)
		if err != nil {
			return out, err
		}
		sends = append(sends, outgoing{stepUUID: r.stepUUID, attempt: 1, body: body})
	}
	msgIDs, err := send(ctx, tx, task, sends)
	if err != nil {
		return out, err
	}
	out.dispatched = len(sends)
	out.readySent = len(sq.ready)

	b := &pgx.Batch{}
	if len(sends) > 0 {
		queueDispatchLog(b, task, sends, msgIDs, now)
	}
	newState, reason := decideTaskState(task.state, sq.counts)
	if newState != task.state {
		if newState == TaskError && sq.counts.pending > 0 {
			b.Queue(cancelPendingSQL, task.uuid, now, "task failed: step unreachable").Exec(func(pgconn.CommandTag) error { return nil })
		}
		b.Queue(taskCASSQL, task.uuid, task.state, newState, now, reason).Exec(func(ct pgconn.CommandTag) error {
			if ct.RowsAffected() == 1 {
				out.state, out.changed = newState, true
			}
			return nil
		})
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			if isUniqueViolation(err) {
				return out, fmt.Errorf("record dispatches of task %s: a step attempt was dispatched twice (refused): %w", task.uuid, err)
			}
			return out, fmt.Errorf("update task %s: %w", task.uuid, err)
		}
	}
	if out.changed {
		task.state = out.state
	}
	return out, nil
}

// decideTaskState applies the finalization rules to the counts taken after the ready steps
// were dispatched (so "ready" steps count as enqueued).
func decideTaskState(current string, c stepCounts) (state, reason string) {
	if TaskFinished(current) {
		return current, ""
	}
	switch {
	case c.total > 0 && c.complete == c.total:
		return TaskComplete, "all steps complete"
	case c.enqueued > 0:
		return TaskStepsInProcess, "steps in process"
	case c.waiting > 0:
		return TaskWaitingForRetry, "waiting for a step retry"
	case c.errored > 0 || c.cancelled > 0:
		return TaskError, fmt.Sprintf("%d step(s) in error, no work left", c.errored)
	default:
		// Only pending steps and nothing that could make them ready: impossible for a valid
		// DAG. Leave the task running rather than invent an outcome.
		return TaskStepsInProcess, "steps in process"
	}
}

// cancelPendingSQL cancels every pending step of a failed task, with history.
const cancelPendingSQL = `
	WITH c AS (
	  UPDATE tasker.workflow_steps SET state = 'cancelled', updated_at = $2
	  WHERE task_uuid = $1 AND state = 'pending'
	  RETURNING step_uuid, attempts)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, $1, 'pending', 'cancelled', attempts, $3, $2 FROM c`

// taskCASSQL moves a task from $2 to $3 and writes the history row; 1 row affected means done.
const taskCASSQL = `
	WITH u AS (
	  UPDATE tasker.workflow_tasks
	  SET state = $3::text, updated_at = $4::timestamptz,
	      completed_at = CASE WHEN $3::text IN ('complete', 'error') THEN $4::timestamptz ELSE completed_at END
	  WHERE task_uuid = $1 AND state = $2::text
	  RETURNING task_uuid)
	INSERT INTO tasker.workflow_task_transitions (task_uuid, from_state, to_state, reason, created_at)
	SELECT task_uuid, $2::text, $3::text, $5::text, $4::timestamptz FROM u`

const dispatchLogSQL = `
	INSERT INTO tasker.workflow_step_dispatches (step_uuid, attempt, task_uuid, queue, msg_id, delay_seconds, dispatched_at)
	SELECT u.step_uuid, u.attempt, $1, $2, u.msg_id, u.delay_seconds, $3
	FROM unnest($4::uuid[], $5::int[], $6::bigint[], $7::int[]) AS u(step_uuid, attempt, msg_id, delay_seconds)`

func queueDispatchLog(b *pgx.Batch, task *lockedTask, sends []outgoing, msgIDs []int64, now time.Time) {
	steps := make([]uuid.UUID, len(sends))
	attempts := make([]int32, len(sends))
	delays := make([]int32, len(sends))
	for i, s := range sends {
		steps[i], attempts[i], delays[i] = s.stepUUID, int32(s.attempt), s.delay
	}
	b.Queue(dispatchLogSQL, task.uuid, messages.WorkerQueue(task.namespace), now, steps, attempts, msgIDs, delays).
		Exec(func(pgconn.CommandTag) error { return nil })
}

// send sends the dispatches with one pgmq.SendBatch per distinct delay and returns the message
// ids in the order of sends.
func send(ctx context.Context, tx pgx.Tx, task *lockedTask, sends []outgoing) ([]int64, error) {
	queue := messages.WorkerQueue(task.namespace)
	ids := make([]int64, len(sends))
	if len(sends) == 0 {
		return ids, nil
	}
	var delays []int32
	for _, s := range sends {
		if !slices.Contains(delays, s.delay) {
			delays = append(delays, s.delay)
		}
	}
	for _, d := range delays {
		var (
			idx    []int
			bodies []json.RawMessage
		)
		for i, s := range sends {
			if s.delay == d {
				idx = append(idx, i)
				bodies = append(bodies, s.body)
			}
		}
		got, err := pgmq.SendBatch(ctx, tx, queue, bodies, pgmq.SendOptions{Delay: time.Duration(d) * time.Second})
		if err != nil {
			return nil, fmt.Errorf("dispatch %d step(s) of task %s: %w", len(bodies), task.uuid, err)
		}
		if len(got) != len(bodies) {
			return nil, fmt.Errorf("dispatch %d step(s) of task %s: pgmq returned %d message ids", len(bodies), task.uuid, len(got))
		}
		for j, i := range idx {
			ids[i] = got[j]
		}
	}
	return ids, nil
}

// ceilSeconds rounds a delay up to whole seconds, PGMQ's delay unit.
func ceilSeconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	return int32(s)
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// truncate shortens s for a history reason.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at a rune boundary.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
