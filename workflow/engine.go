package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/messages"
)

// Task states (see docs/protocol.md).
const (
	TaskPending         = "pending"
	TaskStepsInProcess  = "steps_in_process"
	TaskWaitingForRetry = "waiting_for_retry"
	TaskComplete        = "complete"
	TaskError           = "error"
	TaskCancelled       = "cancelled"
)

// Step states (see docs/protocol.md).
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

// pageCostSQL starts the first round trip of every handler call. The engine reads a few
// rows by key from tables that live in memory; with the default random_page_cost, plans made
// while the tables were nearly empty (a fresh database), and cached generic plans in
// particular, scan them sequentially long after they have grown. Planning every statement
// for its arrays instead (force_custom_plan) cost more CPU per step in the saturation
// benchmark than it saved, most of all on batches of one.
const pageCostSQL = "SET LOCAL random_page_cost = 1.1"

// newBatch returns the batch of a handler call's first round trip.
func newBatch() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue(pageCostSQL)
	return b
}

// lockedTask is a task row as read under its row lock.
type lockedTask struct {
	uuid          uuid.UUID
	correlationID uuid.UUID
	namespace     string
	name          string
	version       string
	state         string
	context       []byte
}

// lockTasksSQL locks task rows in task_uuid order: the row locks are taken after the sort, so
// every batch takes its tasks in one global order and two batches sharing tasks cannot
// deadlock. Keep it a statement of its own: a statement that waited for a lock still reads
// other tables from its old snapshot, the next statement sees what the lock holder committed.
const lockTasksSQL = `
	SELECT task_uuid, correlation_id, namespace, name, version, state, context
	FROM tasker.workflow_tasks WHERE task_uuid = ANY($1::uuid[])
	ORDER BY task_uuid FOR UPDATE`

// queueLockTasks queues the lock of the tasks into b; the tasks found go into into.
func queueLockTasks(b *pgx.Batch, ids []uuid.UUID, into map[uuid.UUID]*lockedTask) {
	b.Queue(lockTasksSQL, uuidArgs(ids)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			t := &lockedTask{}
			if err := rows.Scan(&t.uuid, &t.correlationID, &t.namespace, &t.name, &t.version, &t.state, &t.context); err != nil {
				return fmt.Errorf("lock tasks: %w", err)
			}
			into[t.uuid] = t
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lock tasks: %w", err)
		}
		return nil
	})
}

// distinct returns ids without repeats, in first-seen order.
func distinct(ids []uuid.UUID) []uuid.UUID {
	seen := make(map[uuid.UUID]bool, len(ids))
	out := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// readyStep is a step moved from pending to enqueued by the ready statement, with what its
// dispatch needs.
type readyStep struct {
	taskUUID          uuid.UUID
	stepUUID          uuid.UUID
	name              string
	callable          string
	initialization    []byte
	maxAttempts       int
	dependencyResults map[string]json.RawMessage
}

// readySQL dispatches (marks enqueued, attempt 1, with history) every pending step of the
// unfinished tasks $1 whose parents are all complete, and returns what the dispatch messages
// need, by task and in declaration order. The caller must send a message for every row.
const readySQL = `
	WITH ready AS (
	  SELECT s.step_uuid
	  FROM tasker.workflow_steps s
	  JOIN tasker.workflow_tasks t ON t.task_uuid = s.task_uuid
	  WHERE s.task_uuid = ANY($1::uuid[]) AND s.state = $3::text AND t.state = ANY($4::text[])
	    AND NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e
	                    JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	                    WHERE e.child_uuid = s.step_uuid AND p.state <> $5::text)
	), moved AS (
	  UPDATE tasker.workflow_steps s
	  SET state = $6::text, attempts = 1, next_retry_at = NULL, updated_at = $2::timestamptz
	  FROM ready r
	  WHERE s.step_uuid = r.step_uuid AND s.state = $3::text
	  RETURNING s.step_uuid, s.task_uuid, s.name, s.position, s.callable, s.initialization, s.max_attempts
	), history AS (
	  INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	  SELECT m.step_uuid, m.task_uuid, $3::text, $6::text, 1, $7::text, $2::timestamptz
	  FROM moved m
	), deps AS (
	  SELECT e.child_uuid, jsonb_object_agg(p.name, coalesce(p.result, 'null'::jsonb)) AS results
	  FROM tasker.workflow_step_edges e
	  JOIN tasker.workflow_steps p ON p.step_uuid = e.parent_uuid
	  WHERE e.child_uuid IN (SELECT step_uuid FROM ready)
	  GROUP BY e.child_uuid
	)
	SELECT m.task_uuid, m.step_uuid, m.name, m.callable, m.initialization, m.max_attempts,
	       coalesce(d.results, '{}'::jsonb)
	FROM moved m LEFT JOIN deps d ON d.child_uuid = m.step_uuid
	ORDER BY m.task_uuid, m.position`

// runningTaskStates are the states in which a task's steps may still be dispatched.
var runningTaskStates = []string{TaskPending, TaskStepsInProcess, TaskWaitingForRetry}

const readyReason = "dependencies complete: dispatched attempt 1"

// stepCounts counts a task's steps by state.
type stepCounts struct {
	total, pending, enqueued, waiting, complete, errored, cancelled int
}

const countsSQL = `
	SELECT task_uuid, count(*)::int,
	       count(*) FILTER (WHERE state = $2::text)::int,
	       count(*) FILTER (WHERE state = $3::text)::int,
	       count(*) FILTER (WHERE state = $4::text)::int,
	       count(*) FILTER (WHERE state = $5::text)::int,
	       count(*) FILTER (WHERE state = $6::text)::int,
	       count(*) FILTER (WHERE state = $7::text)::int
	FROM tasker.workflow_steps WHERE task_uuid = ANY($1::uuid[])
	GROUP BY task_uuid`

// settling is one task being settled at the end of a batch: what the settle statements read
// for it, the dispatches to send besides its ready steps, and the outcome.
type settling struct {
	task   *lockedTask
	ready  []readyStep
	counts stepCounts
	extra  []outgoing // sent before the ready steps, e.g. a retry

	dispatched int    // messages sent (retries included)
	readySent  int    // of which newly ready steps
	state      string // the task's state afterwards
	changed    bool
}

// settleQuery collects the results of the ready and counts statements of one batch.
type settleQuery struct {
	byTask map[uuid.UUID]*settling
}

// queueSettle appends the ready and counts statements for the tasks of sq to b. They must come
// after every statement of the batch that changes steps.
func (e *Engine) queueSettle(b *pgx.Batch, sq *settleQuery, now time.Time) {
	ids := make([]uuid.UUID, 0, len(sq.byTask))
	for id := range sq.byTask {
		ids = append(ids, id)
	}
	b.Queue(readySQL, uuidArgs(ids), now, StepPending, runningTaskStates, StepComplete, StepEnqueued, readyReason).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var r readyStep
			var deps []byte
			if err := rows.Scan(&r.taskUUID, &r.stepUUID, &r.name, &r.callable, &r.initialization, &r.maxAttempts, &deps); err != nil {
				return fmt.Errorf("dispatch ready steps: %w", err)
			}
			if err := json.Unmarshal(deps, &r.dependencyResults); err != nil {
				return fmt.Errorf("dispatch ready steps: step %s: dependency results: %w", r.stepUUID, err)
			}
			st := sq.byTask[r.taskUUID]
			if st == nil {
				return fmt.Errorf("dispatch ready steps: step %s of task %s, which is not in the batch", r.stepUUID, r.taskUUID)
			}
			st.ready = append(st.ready, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("dispatch ready steps: %w", err)
		}
		return nil
	})
	b.Queue(countsSQL, uuidArgs(ids), StepPending, StepEnqueued, StepWaitingForRetry, StepComplete, StepError, StepCancelled).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			var c stepCounts
			if err := rows.Scan(&id, &c.total, &c.pending, &c.enqueued, &c.waiting, &c.complete, &c.errored, &c.cancelled); err != nil {
				return fmt.Errorf("count steps: %w", err)
			}
			if st := sq.byTask[id]; st != nil {
				st.counts = c
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("count steps: %w", err)
		}
		return nil
	})
}

// outgoing is one step dispatch to send.
type outgoing struct {
	taskUUID uuid.UUID
	stepUUID uuid.UUID
	attempt  int
	delay    int32 // whole seconds
	body     json.RawMessage
}

// dispatchBody builds the step dispatch message (see docs/protocol.md).
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

// settle finishes a batch after the settle statements ran: for every task it sends the
// dispatches (extra ones such as a retry, then the newly ready steps) and records them in the
// dispatch log, decides the task's state and writes it (with history, cancelling unreachable
// steps when the task fails). Everything goes in one round trip, whatever the number of tasks:
// one send per worker queue and delay, one cancel, one task update.
func (e *Engine) settle(ctx context.Context, tx pgx.Tx, tasks []*settling, now time.Time) error {
	b := &pgx.Batch{}
	var sends []outgoing
	for _, st := range tasks {
		st.state = st.task.state
		sends = append(sends, st.extra...)
		for _, r := range st.ready {
			body, err := dispatchBody(st.task, r.stepUUID, r.name, r.callable, r.initialization, 1, r.maxAttempts, r.dependencyResults)
			if err != nil {
				return err
			}
			sends = append(sends, outgoing{taskUUID: st.task.uuid, stepUUID: r.stepUUID, attempt: 1, body: body})
		}
		st.dispatched = len(st.extra) + len(st.ready)
		st.readySent = len(st.ready)
	}
	namespaces := make(map[uuid.UUID]string, len(tasks))
	for _, st := range tasks {
		namespaces[st.task.uuid] = st.task.namespace
	}
	queueSends(b, sends, namespaces, now)

	var cancel []uuid.UUID
	var casTasks []uuid.UUID
	var casFrom, casTo, casReason []string
	byTask := make(map[uuid.UUID]*settling, len(tasks))
	for _, st := range tasks {
		byTask[st.task.uuid] = st
		newState, reason := decideTaskState(st.task.state, st.counts)
		if newState == st.task.state {
			continue
		}
		if newState == TaskError && st.counts.pending > 0 {
			cancel = append(cancel, st.task.uuid)
		}
		casTasks = append(casTasks, st.task.uuid)
		casFrom, casTo, casReason = append(casFrom, st.task.state), append(casTo, newState), append(casReason, reason)
	}
	if len(cancel) > 0 {
		b.Queue(cancelPendingSQL, uuidArgs(cancel), now, StepCancelled, StepPending, "task failed: step unreachable").
			Exec(func(pgconn.CommandTag) error { return nil })
	}
	if len(casTasks) > 0 {
		b.Queue(taskCASSQL, now, []string{TaskComplete, TaskError}, uuidArgs(casTasks), casFrom, casTo, casReason).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id uuid.UUID
				var to string
				if err := rows.Scan(&id, &to); err != nil {
					return err
				}
				if st := byTask[id]; st != nil {
					st.state, st.changed = to, true
				}
			}
			return rows.Err()
		})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("record dispatches: a step attempt was dispatched twice (refused): %w", err)
		}
		return fmt.Errorf("settle %d task(s): %w", len(tasks), err)
	}
	for _, st := range tasks {
		if st.changed {
			st.task.state = st.state
		}
	}
	return nil
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

// cancelPendingSQL cancels every pending step of the failed tasks $1, with history.
const cancelPendingSQL = `
	WITH c AS (
	  UPDATE tasker.workflow_steps SET state = $3::text, updated_at = $2::timestamptz
	  WHERE task_uuid = ANY($1::uuid[]) AND state = $4::text
	  RETURNING step_uuid, task_uuid, attempts)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, task_uuid, $4::text, $3::text, attempts, $5::text, $2::timestamptz FROM c`

// taskCASSQL moves each task $3[i] from $4[i] to $5[i] and writes its history row; it returns
// the tasks that moved with their new state. $2 are the states that set completed_at.
const taskCASSQL = `
	WITH c AS (
	  SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[]) AS c(task_uuid, from_state, to_state, reason)
	), u AS (
	  UPDATE tasker.workflow_tasks t
	  SET state = c.to_state, updated_at = $1::timestamptz,
	      completed_at = CASE WHEN c.to_state = ANY($2::text[]) THEN $1::timestamptz ELSE t.completed_at END
	  FROM c
	  WHERE t.task_uuid = c.task_uuid AND t.state = c.from_state
	  RETURNING t.task_uuid, c.from_state, c.to_state, c.reason)
	INSERT INTO tasker.workflow_task_transitions (task_uuid, from_state, to_state, reason, created_at)
	SELECT task_uuid, from_state, to_state, reason, $1::timestamptz FROM u
	RETURNING task_uuid, to_state`

// sendSQL sends the dispatches of one worker queue and delay with pgmq.send_batch and records
// them in the dispatch log, pairing each message id with its step by position (send_batch
// returns the ids in the order of the bodies). The log's primary key refuses a second
// dispatch of one attempt, failing the statement and with it the transaction.
const sendSQL = `
	WITH sent AS (
	  SELECT s.msg_id, s.ord FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer) WITH ORDINALITY AS s(msg_id, ord)
	)
	INSERT INTO tasker.workflow_step_dispatches (step_uuid, attempt, task_uuid, queue, msg_id, delay_seconds, dispatched_at)
	SELECT u.step_uuid, u.attempt, u.task_uuid, $1::text, sent.msg_id, $3::integer, $4::timestamptz
	FROM unnest($5::uuid[], $6::int[], $7::uuid[]) WITH ORDINALITY AS u(step_uuid, attempt, task_uuid, ord)
	JOIN sent ON sent.ord = u.ord`

// queueSends queues one send statement per worker queue and delay into b.
func queueSends(b *pgx.Batch, sends []outgoing, namespaces map[uuid.UUID]string, now time.Time) {
	type group struct {
		queue string
		delay int32
	}
	var order []group
	byGroup := map[group][]outgoing{}
	for _, s := range sends {
		g := group{queue: messages.WorkerQueue(namespaces[s.taskUUID]), delay: s.delay}
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], s)
	}
	for _, g := range order {
		group := byGroup[g]
		bodies := make([]json.RawMessage, len(group))
		steps := make([]uuid.UUID, len(group))
		attempts := make([]int32, len(group))
		tasks := make([]uuid.UUID, len(group))
		for i, s := range group {
			bodies[i], steps[i], attempts[i], tasks[i] = s.body, s.stepUUID, int32(s.attempt), s.taskUUID
		}
		b.Queue(sendSQL, g.queue, bodies, g.delay, now, uuidArgs(steps), attempts, uuidArgs(tasks)).Exec(func(ct pgconn.CommandTag) error {
			if ct.RowsAffected() != int64(len(group)) {
				return fmt.Errorf("dispatch %d step(s) to %s: %d recorded", len(group), g.queue, ct.RowsAffected())
			}
			return nil
		})
	}
}

// uuidArgs turns ids into the text form of a uuid[] parameter: pgx has no encoding of
// []uuid.UUID in the exec and simple protocol query modes (needed behind PgBouncer), and a
// ::uuid[] cast in the statement reads text in every mode.
func uuidArgs(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
