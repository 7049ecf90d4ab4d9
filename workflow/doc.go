// Package workflow is the orchestration core: it turns task requests into tasks and steps,
// records step results, retries failed steps with backoff, dispatches steps whose dependencies
// are complete, and finalizes tasks (see docs/protocol.md).
//
// # Pieces
//
//   - [Register] stores parsed templates (package template) in the registry table and creates
//     each namespace's worker queue with its notify trigger. It runs at start-up.
//   - [Engine] implements the actor's three handler interfaces (actor.TaskHandler,
//     actor.StepHandler, actor.FinalizationHandler). Each method takes a whole batch of one
//     queue and works inside the transaction it is given, which is also the transaction that
//     acknowledges the messages; the engine never commits or rolls it back. Its only mutable
//     state is a concurrency-safe cache of parsed template definitions.
//   - [GetTaskStatus], [FindTaskByRequestID] and [FindTasksByCorrelationID] read the public
//     views tasker.task_status and tasker.step_status for the command line.
//
// # Tables (schema tasker, migration 002_workflow.sql)
//
//	workflow_templates         registry: one row per namespace/name/version, with fingerprint
//	workflow_tasks             one row per task, with its deduplication identity
//	workflow_steps             one row per step, with attempts, result and last error
//	workflow_step_edges        parent → child dependency edges
//	workflow_task_transitions  append-only task state history
//	workflow_step_transitions  append-only step state history
//	workflow_step_dispatches   every dispatch sent; primary key (step_uuid, attempt)
//
// # Batches
//
// A batch of N requests, results or finalizations costs a fixed number of statements and
// two or three round trips, whatever N: arrays go in (unnest), every table is written by one
// multi-row statement with its history rows in the same statement, one readiness statement
// covers every task concerned, and the dispatches go out with one pgmq.send_batch per worker
// queue and delay, recorded in the dispatch log by the same statement. State names are
// parameters taken from the Go constants. A message the engine can judge alone (an unknown
// template or step, an invalid request) fails alone, before anything is written for it; a
// statement that fails fails the call, and the actor isolates the message at fault.
//
// # Consistency
//
// Every call that changes existing tasks first locks their rows (SELECT … ORDER BY task_uuid
// FOR UPDATE, in its own statement so that what it reads next is current). The locks are taken
// in task_uuid order in every call, so two batches that share tasks wait for each other
// without deadlocking; new tasks are inserted in identity order for the same reason. Calls
// touching one task therefore run one after the other even across consumer processes, which is
// what makes a join step whose parents finish at the same moment dispatch exactly once; within
// one batch the results are weighed in order against the steps as the earlier ones left them.
// The engine expects the READ COMMITTED isolation level (PostgreSQL's default).
//
// Every state change is a compare-and-set (UPDATE … WHERE state = expected) that writes its
// history row in the same statement; zero rows updated means someone else got there first and
// is skipped, not reported as an error. A step is marked as dispatched before its message is
// sent, only the steps whose update succeeded are sent, and the dispatch log's primary key
// (step_uuid, attempt) refuses a second dispatch of one attempt. Since the messages are sent
// in the caller's transaction, a rolled-back call leaves neither rows nor messages.
//
// Each call sets random_page_cost to 1.1 for its transaction: the hot rows are in memory,
// and with the default cost the plans made while the tables were nearly empty would keep
// scanning them sequentially after they have grown.
//
// # Step lifecycle
//
// A step starts pending. The dispatch of attempt N sets attempts = N and the state to enqueued
// (N = 1) or waiting_for_retry (a retry, which stays in that state until its result arrives).
// A result is accepted only for a step that is enqueued or waiting_for_retry and whose attempts
// equals the result's attempt; anything else (late, duplicated, for a finished step) is
// acknowledged and ignored. Status completed completes the step; failed is retried while the
// worker says retryable, the template step is retryable and attempts remain; error (and a failed
// step out of retries) puts the step in error.
//
// Retries are sent at once with a PGMQ delay of template.Retry.Backoff (the worker's
// backoff_hint replaces the computed delay, capped at backoff_max). PGMQ delays are whole
// seconds, so the delay is rounded up to the next whole second: a 50ms backoff waits 1s.
// The delay actually applied is recorded in the dispatch log and in the step's next_retry_at.
// A hint of 0 retries at once; a hint too large for a time.Duration is capped like any other.
//
// # Finalization
//
// After every accepted result, and on an explicit finalization request, the task is
// re-evaluated: pending steps whose parents are all complete are dispatched; then the task
// becomes complete when every step is complete; error when a step is in error (or cancelled)
// and nothing is in flight or ready, the remaining pending steps becoming cancelled;
// waiting_for_retry when nothing is enqueued but a retry is pending; steps_in_process
// otherwise. A task that is complete, error or cancelled never changes again.
//
// # Deduplication
//
// A task's identity is, per template: the idempotency_key when the request has one (whatever
// the template's identity_strategy); otherwise for strict the SHA-256 of the template key and
// the canonical context (object keys sorted, insignificant white space removed); none for
// always_unique; caller_provided requires the key. A request whose identity exists already
// creates nothing and returns the existing task with Created false.
//
// # Timestamps
//
// Timestamps the engine writes (created_at, updated_at, completed_at, history, next_retry_at,
// dispatched_at) come from EngineOptions.Now, one reading per batch, so tests can pin
// them. PGMQ computes message visibility (vt) with the database clock.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package workflow
