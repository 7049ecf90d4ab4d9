// Package worker is the Go SDK for step workers: programs that execute the steps the
// orchestration consumer dispatches and report their outcome (the message formats are in
// docs/protocol.md).
//
// # Writing a worker in Go
//
// Register a Handler per callable (the handler.callable of the template steps) and run:
//
//	w := &worker.Worker{Pool: pool, ListenConnString: url, Namespace: "demo"}
//	w.Handle("demo.square", func(ctx context.Context, step worker.Step) (any, error) {
//		var in struct{ N int `json:"n"` }
//		if err := step.DecodeContext(&in); err != nil {
//			return nil, err // already Permanent: bad input never improves
//		}
//		return in.N * in.N, nil
//	})
//	err := w.Run(ctx) // until ctx ends; then finishes the running handlers
//
// The value a handler returns becomes result.result (encoded with encoding/json). Its error
// decides the status: nil is "completed"; a plain error, Retryable(err) or a panic is "failed"
// with error.retryable true (the orchestrator retries while attempts remain);
// RetryableAfter(err, d) adds orchestration_metadata.backoff_hint; Permanent(err) is "error",
// never retried. WithErrorType sets error.error_type.
//
// Run claims at most Concurrency dispatches at a time, extends their visibility timeout with
// heartbeats while the handlers run, and acknowledges each in one transaction that deletes the
// dispatch and sends the result. A malformed dispatch is archived (it can never run); a
// dispatch for a callable with no handler gets a permanent "error" result, so its task does not
// hang. See Worker.Run for shutdown.
//
// Execution is at-least-once: a dispatch whose worker dies (or whose handler outlives the
// visibility timeout without heartbeats) is delivered again and the same attempt runs twice.
// Results carry the attempt and the orchestrator ignores a second result for an attempt, but
// handlers' own side effects must be idempotent. This worker also drops its result when it
// finds the dispatch already deleted, so usually only one result per attempt is sent.
//
// # Writing a worker in any language
//
// Nothing here is Go-specific: a worker needs PGMQ access only, no knowledge of the workflow
// tables. With any PGMQ client, or plain SQL:
//
//  1. Claim work: SELECT msg_id, read_ct, message FROM pgmq.read('worker_<ns>_queue', 30, 8)
//     hides up to 8 dispatches for 30 seconds. Ask for no more than you can run now. To wake
//     up early, LISTEN on "pgmq_message_ready.<ns>" (the payload names the queue and the new
//     message ids), but keep polling every second or so: delayed retries, expired visibility
//     timeouts and messages sent while you were disconnected are never announced.
//  2. Decode the body (the step dispatch of docs/protocol.md): task_uuid, step_uuid,
//     correlation_id, handler.callable, handler.initialization, attempt, max_attempts,
//     task_context, dependency_results. If it cannot be decoded, SELECT
//     pgmq.archive('worker_<ns>_queue', msg_id) and log it: it can never run.
//  3. Run the step. While it runs, extend the claim every third of the visibility timeout:
//     SELECT pgmq.set_vt('worker_<ns>_queue', msg_id, 30). Without it, a step longer than the
//     timeout is delivered to a second worker.
//  4. Report, ideally in ONE transaction, so that a crash leaves either both or neither: delete
//     the dispatch and send the step result (docs/protocol.md). If pgmq.delete returns false,
//     another worker already finished this delivery: roll back instead of sending a duplicate.
//
// The transaction of step 4:
//
//	BEGIN;
//	SELECT pgmq.delete('worker_<ns>_queue', msg_id);  -- false: ROLLBACK and stop
//	SELECT pgmq.send('orchestration_step_results', '{
//	  "task_uuid": "…", "step_uuid": "…", "correlation_id": "…", "attempt": 1,
//	  "result": {"success": true, "status": "completed", "result": 36,
//	             "metadata": {"execution_time_ms": 3, "worker_id": "w1"}}}');
//	COMMIT;
//
// Copy task_uuid, step_uuid, correlation_id and attempt from the dispatch. status is
// "completed", "failed" (retried while error.retryable is true and attempts remain) or "error"
// (never retried); a failure carries "error": {"message", "error_type", "retryable"} and,
// optionally, "orchestration_metadata": {"backoff_hint": {"delay_seconds": 30}}.
//
// If the process dies between steps 1 and 4, the dispatch reappears after its visibility
// timeout and another worker runs it.
//
// It is supported API, with messages (the wire formats), pgmq (the PGMQ client) and tasker (the
// project's claim and notify functions). Its third-party dependencies are pgx, pgxlisten, zap,
// google/uuid and cenkalti/backoff: no Prometheus, no migration library. The consumer packages
// it runs on (listener, poller) are implementation details behind its API.
package worker
