// Command chaos is the fault-injection suite (see docs/operations.md): it runs the real
// consumer and example-worker binaries as processes against a fresh database per scenario,
// submits a burst of task requests, injects one kind of fault while the burst is processed, waits
// until everything settles and then proves, from the database, that no message was lost and
// nothing happened twice.
//
//	make chaos                     # the full suite (minutes); scripts/with-db.sh provides DATABASE_URL
//	go run ./cmd/chaos -only sigkill,listener -requests 100
//	go test ./cmd/chaos            # the short version, inside `make test`
//
// Flags: -only (comma-separated scenario names or prefixes), -requests (valid task requests of
// a full-size scenario; others scale from it), -keep (keep the scenario databases), -seed
// (reproduce the random choices), -short (the reduced set that `go test` runs), -parallel
// (scenarios at once; the PostgreSQL restarts always run alone), -restart=false (skip the
// server restarts), -log-level (LOG_LEVEL of the processes), -q (no progress lines).
//
// # Scenarios
//
// Every scenario gets its own database (internal/testdb.Create), the binaries built into a
// temporary directory (internal/proc.Build), a consumer with a small visibility timeout (2s) so
// redelivery happens within the scenario, and an example worker with a small per-step delay so
// that work is in flight when the fault hits. Requests are sent with pgmq.send (singly and in
// batches, which the notify trigger announces differently) over a few seconds, with a distinct
// context each (the default strict identity strategy would merge equal ones), cycling through the
// linear, diamond, tree, mixed and retry templates of testdata/templates; some carry an
// idempotency_key.
//
//   - sigkill: the consumer is killed with SIGKILL ten times in the middle of the burst and
//     restarted each time. Work of the killed process comes back after the visibility timeout.
//   - listener: the consumer's LISTEN connection (application_name consumer-listener) is
//     terminated with pg_terminate_backend again and again. The process must reconnect by
//     itself: same pid, /readyz 200 again, notifications flowing.
//   - restart-fast, restart-immediate: PostgreSQL itself is restarted mid-burst (scripts/pg.sh
//     restart fast|immediate). Only when the server is the local cluster of scripts/pg.sh (or
//     CONSUMER_CHAOS_PG_SCRIPT names a script taking the same arguments); otherwise the row says
//     "skipped: not a local cluster". `go test` skips them unless CONSUMER_CHAOS_RESTART=1,
//     because other tests may be using the server.
//   - multi: three consumers and two workers share the queues (join steps whose parents
//     finish on different consumers, concurrent claims, one task lock), and every step result
//     is sent a second time the moment it is committed, so the copies race the originals
//     across the consumers.
//   - malformed: the burst is mixed with bodies that can never be processed — a JSON string,
//     an array, a number, null, missing fields, wrong types, an unknown template, namespace or
//     version, ~1 MB bodies, results for unknown steps, finalizations of unknown tasks — and
//     with poison messages: a request that fails in the database on every delivery (a
//     request_id too long for its index) and messages that were already delivered too often.
//     All of them must end in orchestration_dlq with a reason, the source queue and message
//     id and the original body; a valid request with a ~1 MB context must complete. (PGMQ
//     stores bodies as jsonb, so text that is not JSON at all cannot be enqueued.)
//   - slow-heartbeat, slow-no-heartbeat: the worker's step (3s) takes longer than its
//     visibility timeout (2s). With heartbeats (pgmq.set_vt every 250ms) every attempt runs
//     once and sends one result; without, the dispatch is delivered again while the first run
//     is still going (the scenario fails if no redelivery is seen), every result is also sent
//     twice as in multi, and still exactly one result is accepted per attempt.
//   - stall: the consumer's own handlers become slower than its visibility
//     timeout — a transaction of the suite holds an EXCLUSIVE lock on tasker.workflow_tasks for
//     five visibility timeouts, twice. A slow consumer is not a poison message: afterwards every
//     request must complete and nothing may be dead-lettered for its delivery count.
//   - sigterm: the consumer gets SIGTERM during the burst; it must drain and exit 0 within
//     its shutdown timeout, and the next start finishes the rest.
//
// After the burst and the faults, a scenario waits (with a deadline) until it is quiescent: the
// orchestration queues and the worker queue are empty and every task is finished. It then
// replays every step result a worker ever sent and a finalization request for every task — a
// storm of duplicates, which must change nothing — and waits again.
//
// # Checks
//
// Workers' dispatches and results are recorded by a statement trigger the suite adds to
// pgmq.q_worker_demo_queue and pgmq.q_orchestration_step_results (table chaos.sent); it runs in
// the sending transaction, so it sees exactly the messages that were committed.
//
//   - lost: a valid request that is neither exactly one task in a terminal state
//     (tasker.workflow_tasks.request_id, tasker.task_status.state) nor in the DLQ with a reason;
//     a task still unfinished at the deadline, and an invalid message found neither in its
//     queue nor in the DLQ, count as lost too. Valid requests that were dead-lettered are
//     allowed but counted in their own column (VALID→DLQ) and listed in the notes — except in
//     stall, where they fail the row.
//   - duplicated: a request that became more than one task; a (step_uuid, attempt) with more
//     than one accepted result (tasker.workflow_step_transitions rows that leave enqueued or
//     waiting_for_retry because of a result: to complete or error for that attempt, or to
//     waiting_for_retry when its retry was dispatched; the reason names the attempt); a
//     (step_uuid, attempt) dispatched more than once (transitions into enqueued or
//     waiting_for_retry, and messages committed to worker_demo_queue, cross-checked with
//     tasker.workflow_step_dispatches, whose msg_id must be the message that was sent).
//   - outcome: every valid task is complete with every step complete, and the last step's
//     result is the value the demo handlers compute from the context (a redelivery that mixed
//     up dependency results would show here).
//   - queues: orchestration_task_requests, orchestration_step_results,
//     orchestration_task_finalizations and worker_demo_queue are empty.
//   - dead letters: every invalid or poison message is in orchestration_dlq exactly once, with
//     a reason, its source queue and message id and its original body; the DLQ holds nothing
//     else (a valid request dead-lettered after too many deliveries is reported as a note).
//   - replay: the duplicate storm added no transition, dispatch, task or dead letter.
//   - processes: no process exited by itself, every consumer answers /readyz 200 at the end
//     and exits 0 on SIGTERM (after the listener and restart faults without ever having been
//     restarted), no log shows a panic.
//   - recovery: for each fault, the time from the fault until every consumer answers /readyz
//     200 (and, after a listener or server fault, a new LISTEN connection exists) and a task
//     completed after the fault (or nothing was left to do). The table shows the worst one.
//
// TestChecksCatchViolations (in chaos_test.go) proves the checks are not vacuous: it doctors a
// settled database with each kind of violation and expects each to be counted.
//
// The table has one row per scenario: requests, faults injected, lost, duplicated, valid
// requests dead-lettered, recovery time, duration and a verdict. Zero lost and zero duplicated in every row is the bar; any failed check
// fails the row, and any failed row makes the program exit 1 after printing the evidence (the
// first offending request ids or step uuids, and which log to read). Logs of every process are
// kept in .chaos/<timestamp>/<scenario>/ under the module root (git-ignored).
//
// Connections: a consumer uses at most 13 (pool of concurrency + 4, plus LISTEN), a worker 11
// (19 in the slow scenarios), the suite 6 per scenario; the largest scenario (multi) stays
// under 70, and the short test runs at most three scenarios at once, under the 150 the suite
// allows itself. The peak is sampled from pg_stat_activity and printed under the table.
package main
