package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/workflow"
)

// evidenceMax is how many offending ids a finding lists.
const evidenceMax = 5

// findings accumulates what the checks found.
type findings struct {
	lost       int
	duplicated int
	dlqValid   int
	lostIDs    []string
	dupIDs     []string
}

func (f *findings) addLost(format string, args ...any) {
	f.lost++
	if len(f.lostIDs) < evidenceMax {
		f.lostIDs = append(f.lostIDs, fmt.Sprintf(format, args...))
	}
}

func (f *findings) addDup(n int, format string, args ...any) {
	f.duplicated += n
	if len(f.dupIDs) < evidenceMax {
		f.dupIDs = append(f.dupIDs, fmt.Sprintf(format, args...))
	}
}

// counter collects offending items for a problem line.
type counter struct {
	n     int
	items []string
}

func (c *counter) add(format string, args ...any) {
	c.n++
	if len(c.items) < evidenceMax {
		c.items = append(c.items, fmt.Sprintf(format, args...))
	}
}

func (c *counter) report(h *harness, what string) {
	if c.n > 0 {
		h.problemf("%s: %d, e.g. %s", what, c.n, strings.Join(c.items, "; "))
	}
}

type sourceKey struct {
	queue string
	id    int64
}

// taskRow is a task as the checks see it.
type taskRow struct {
	requestID, taskUUID, template, state string
	total, complete                      int
	lastResult                           *string
}

func (h *harness) tasks(ctx context.Context) ([]taskRow, error) {
	last, _ := json.Marshal(lastSteps())
	rows, err := h.pool.Query(ctx, `
		SELECT coalesce(t.request_id, ''), t.task_uuid::text, t.name, s.state, s.steps_total, s.steps_complete,
		       (SELECT ss.result::text FROM tasker.step_status ss
		        WHERE ss.task_uuid = t.task_uuid AND ss.name = $1::jsonb->>t.name)
		FROM tasker.workflow_tasks t JOIN tasker.task_status s USING (task_uuid)`, last)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (taskRow, error) {
		var t taskRow
		err := row.Scan(&t.requestID, &t.taskUUID, &t.template, &t.state, &t.total, &t.complete, &t.lastResult)
		return t, err
	})
}

// checkAll runs every database check and fills f. It assumes quiescence.
func (h *harness) checkAll(ctx context.Context, f *findings) error {
	// Every dead letter, archived ones included; a body that does not decode keeps its zero
	// fields and fails the checks below.
	dls, err := dlq.List(ctx, h.pool, dlq.ListOptions{Archived: true})
	if err != nil {
		return err
	}
	dlqBySource := map[sourceKey][]dlq.Letter{}
	for _, d := range dls {
		k := sourceKey{d.SourceQueue, d.SourceMsgID}
		dlqBySource[k] = append(dlqBySource[k], d)
	}
	matched := map[int64]bool{} // dead letters explained by a message we sent

	// Valid requests: exactly one terminal task each, or a dead letter with a reason.
	tasks, err := h.tasks(ctx)
	if err != nil {
		return fmt.Errorf("read tasks: %w", err)
	}
	byRequest := map[string][]taskRow{}
	for _, t := range tasks {
		byRequest[t.requestID] = append(byRequest[t.requestID], t)
	}
	var stuck, wrong, unknownTasks counter
	var dlqValid []string
	ids := make([]string, 0, len(h.valid))
	for id := range h.valid {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := h.valid[id]
		var letters []dlq.Letter
		for _, m := range r.msgIDs {
			for _, d := range dlqBySource[sourceKey{messages.QueueTaskRequests, m}] {
				letters = append(letters, d)
				matched[d.MsgID] = true
			}
		}
		ts := byRequest[id]
		switch {
		case len(ts) == 0 && len(letters) > 0 && letters[0].Reason != "":
			dlqValid = append(dlqValid, fmt.Sprintf("%s (%s: %s)", id, letters[0].Reason, letters[0].Error))
			continue
		case len(ts) == 0:
			f.addLost("request %s (%s, msg_ids %v): no task and no dead letter", id, r.template.name, r.msgIDs)
			continue
		case len(ts) > 1:
			var uuids []string
			for _, t := range ts {
				uuids = append(uuids, t.taskUUID)
			}
			f.addDup(len(ts)-1, "request %s became %d tasks: %s", id, len(ts), strings.Join(uuids, ", "))
		}
		for _, t := range ts {
			switch t.state {
			case workflow.TaskComplete:
				want := strconv.FormatInt(r.template.expect(r.n*r.n), 10)
				if t.complete != t.total {
					wrong.add("task %s (request %s) complete with %d of %d steps complete", t.taskUUID, id, t.complete, t.total)
				} else if t.lastResult == nil || *t.lastResult != want {
					got := "null"
					if t.lastResult != nil {
						got = *t.lastResult
					}
					wrong.add("task %s (%s, n=%d): %s result %s, want %s", t.taskUUID, r.template.name, r.n, r.template.last, got, want)
				}
			case workflow.TaskError, workflow.TaskCancelled:
				wrong.add("task %s (%s, request %s) ended %s", t.taskUUID, r.template.name, id, t.state)
			default:
				stuck.add("task %s (%s, request %s) still %s", t.taskUUID, r.template.name, id, t.state)
				f.addLost("request %s: task %s never finished (%s)", id, t.taskUUID, t.state)
			}
		}
	}
	for _, t := range tasks {
		if _, ok := h.valid[t.requestID]; !ok {
			unknownTasks.add("task %s (%s, request_id %.40q)", t.taskUUID, t.template, t.requestID)
		}
	}
	stuck.report(h, "tasks not finished at the deadline")
	wrong.report(h, "tasks with a wrong outcome")
	unknownTasks.report(h, "tasks that no valid request asked for")
	f.dlqValid = len(dlqValid)
	if len(dlqValid) > 0 {
		h.notef("%d valid request(s) dead-lettered instead of run, e.g. %s", len(dlqValid), strings.Join(dlqValid[:min(len(dlqValid), evidenceMax)], "; "))
	}

	// Invalid and poison messages: each in the DLQ exactly once, with a reason and its body.
	var missing, noReason, badBody counter
	reasons := map[string]int{}
	var unexpectedReason []string
	for _, bm := range h.invalid {
		for _, m := range bm.msgIDs {
			letters := dlqBySource[sourceKey{bm.queue, m}]
			for _, d := range letters {
				matched[d.MsgID] = true
			}
			switch {
			case len(letters) == 0:
				missing.add("%s/%d (%s)", bm.queue, m, bm.kind)
				f.addLost("invalid message %s/%d (%s): not in the DLQ", bm.queue, m, bm.kind)
				continue
			case len(letters) > 1:
				f.addDup(len(letters)-1, "message %s/%d (%s) dead-lettered %d times", bm.queue, m, bm.kind, len(letters))
			}
			d := letters[0]
			reasons[d.Reason]++
			if d.Reason == "" {
				noReason.add("%s/%d (%s)", bm.queue, m, bm.kind)
			} else if !slices.Contains(bm.reasons, d.Reason) {
				unexpectedReason = append(unexpectedReason, fmt.Sprintf("%s: %s (%s), expected %s", bm.kind, d.Reason, textutil.FirstLine(d.Error), strings.Join(bm.reasons, " or ")))
			}
			if !sameJSON(d.Message, bm.body) {
				badBody.add("%s/%d (%s): dead letter does not carry the original body", bm.queue, m, bm.kind)
			}
		}
	}
	missing.report(h, "invalid messages missing from the DLQ")
	noReason.report(h, "dead letters without a reason")
	badBody.report(h, "dead letters with a wrong body")
	if len(h.invalid) > 0 {
		h.notef("dead-letter reasons: %s", formatCounts(reasons))
	}
	if len(unexpectedReason) > 0 {
		slices.Sort(unexpectedReason)
		unexpectedReason = slices.Compact(unexpectedReason)
		h.notef("unexpected dead-letter reasons: %s", strings.Join(unexpectedReason, "; "))
	}
	var unexplained counter
	for _, d := range dls {
		if !matched[d.MsgID] {
			unexplained.add("dlq msg %d from %s/%d: %s: %s", d.MsgID, d.SourceQueue, d.SourceMsgID, d.Reason, textutil.FirstLine(d.Error))
		}
	}
	unexplained.report(h, "unexpected dead letters (a worker's result or a request the suite did not send as invalid)")

	return h.checkSteps(ctx, f)
}

// checkSteps checks accepted results and dispatches per (step_uuid, attempt).
func (h *harness) checkSteps(ctx context.Context, f *findings) error {
	// Accepted results: transitions leaving enqueued/waiting_for_retry because of a result. The
	// reason starts with "attempt N" (the result's attempt); to waiting_for_retry the attempt
	// column already holds the retry's attempt.
	rows, err := h.pool.Query(ctx, `
		WITH acc AS (
		  SELECT step_uuid, task_uuid,
		         coalesce((regexp_match(reason, '^attempt (\d+) '))[1]::int,
		                  CASE WHEN to_state = 'waiting_for_retry' THEN attempt - 1 ELSE attempt END) AS a,
		         string_agg(to_state, ',') OVER (PARTITION BY step_uuid) AS tos
		  FROM tasker.workflow_step_transitions
		  WHERE from_state IN ('enqueued', 'waiting_for_retry') AND to_state IN ('complete', 'error', 'waiting_for_retry'))
		SELECT step_uuid::text, task_uuid::text, a, count(*)::int, min(tos)
		FROM acc GROUP BY 1, 2, 3 HAVING count(*) > 1 ORDER BY 1, 3`)
	if err != nil {
		return fmt.Errorf("accepted results: %w", err)
	}
	for rows.Next() {
		var step, task, tos string
		var a, n int
		if err := rows.Scan(&step, &task, &a, &n, &tos); err != nil {
			rows.Close()
			return err
		}
		f.addDup(n-1, "step %s (task %s) attempt %d: %d accepted results (%s)", step, task, a, n, tos)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	// Dispatches recorded as transitions into enqueued / waiting_for_retry.
	var dupTransitions, dupSent int
	var dupItems []string
	rows, err = h.pool.Query(ctx, `
		SELECT step_uuid::text, attempt, count(*)::int FROM tasker.workflow_step_transitions
		WHERE to_state IN ('enqueued', 'waiting_for_retry')
		GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("dispatch transitions: %w", err)
	}
	for rows.Next() {
		var step string
		var a, n int
		if err := rows.Scan(&step, &a, &n); err != nil {
			rows.Close()
			return err
		}
		dupTransitions += n - 1
		dupItems = append(dupItems, fmt.Sprintf("step %s attempt %d: dispatched %d times (workflow_step_transitions)", step, a, n))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// Messages committed to the worker queue.
	rows, err = h.pool.Query(ctx, `
		SELECT step_uuid, attempt, count(*)::int, array_agg(msg_id ORDER BY msg_id) FROM chaos.sent
		WHERE queue = $1 GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2`, workerQueue)
	if err != nil {
		return fmt.Errorf("sent dispatches: %w", err)
	}
	for rows.Next() {
		var step, a string
		var n int
		var ids []int64
		if err := rows.Scan(&step, &a, &n, &ids); err != nil {
			rows.Close()
			return err
		}
		dupSent += n - 1
		dupItems = append(dupItems, fmt.Sprintf("step %s attempt %s: %d messages sent to %s (msg_ids %v)", step, a, n, workerQueue, ids))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if n := max(dupTransitions, dupSent); n > 0 {
		f.addDup(n, "%s", strings.Join(dupItems[:min(len(dupItems), evidenceMax)], "; "))
	}

	// The dispatch log, the messages sent and the transitions must tell the same story.
	var mismatch counter
	rows, err = h.pool.Query(ctx, `
		SELECT coalesce(d.step_uuid::text, s.step_uuid), coalesce(d.attempt::text, s.attempt), d.msg_id, s.msg_id
		FROM tasker.workflow_step_dispatches d
		FULL JOIN (SELECT step_uuid, attempt, msg_id FROM chaos.sent WHERE queue = $1) s
		  ON s.step_uuid = d.step_uuid::text AND s.attempt = d.attempt::text AND s.msg_id = d.msg_id
		WHERE d.step_uuid IS NULL OR s.step_uuid IS NULL
		ORDER BY 1, 2`, workerQueue)
	if err != nil {
		return fmt.Errorf("dispatch log: %w", err)
	}
	for rows.Next() {
		var step, a string
		var logged, sent *int64
		if err := rows.Scan(&step, &a, &logged, &sent); err != nil {
			rows.Close()
			return err
		}
		if logged == nil {
			mismatch.add("step %s attempt %s: message %d sent but not in workflow_step_dispatches", step, a, *sent)
		} else {
			mismatch.add("step %s attempt %s: workflow_step_dispatches names msg %d, which was never committed", step, a, *logged)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = h.pool.Query(ctx, `
		SELECT s.step_uuid::text, s.attempts,
		       (SELECT count(*) FROM tasker.workflow_step_transitions t
		        WHERE t.step_uuid = s.step_uuid AND t.to_state IN ('enqueued', 'waiting_for_retry'))::int,
		       (SELECT count(*) FROM tasker.workflow_step_dispatches d WHERE d.step_uuid = s.step_uuid)::int
		FROM tasker.workflow_steps s
		WHERE s.attempts <> (SELECT count(*) FROM tasker.workflow_step_dispatches d WHERE d.step_uuid = s.step_uuid)
		   OR s.attempts <> (SELECT count(*) FROM tasker.workflow_step_transitions t
		                     WHERE t.step_uuid = s.step_uuid AND t.to_state IN ('enqueued', 'waiting_for_retry'))
		ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("step attempts: %w", err)
	}
	for rows.Next() {
		var step string
		var attempts, transitions, logged int
		if err := rows.Scan(&step, &attempts, &transitions, &logged); err != nil {
			rows.Close()
			return err
		}
		mismatch.add("step %s: attempts %d, %d dispatch transitions, %d dispatch log rows", step, attempts, transitions, logged)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	mismatch.report(h, "dispatch bookkeeping inconsistent (tasker.workflow_step_dispatches vs messages sent vs transitions)")
	return nil
}

// snapshot counts what a replay of duplicates must not change.
type snapshot struct {
	tasks, taskTransitions, stepTransitions, dispatches, sentDispatches, deadLetters int64
}

func (h *harness) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	err := h.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM tasker.workflow_tasks),
		       (SELECT count(*) FROM tasker.workflow_task_transitions),
		       (SELECT count(*) FROM tasker.workflow_step_transitions),
		       (SELECT count(*) FROM tasker.workflow_step_dispatches),
		       (SELECT count(*) FROM chaos.sent WHERE queue = $1),
		       (SELECT count(*) FROM pgmq.q_orchestration_dlq)`, workerQueue,
	).Scan(&s.tasks, &s.taskTransitions, &s.stepTransitions, &s.dispatches, &s.sentDispatches, &s.deadLetters)
	return s, err
}

// replay sends again every step result a worker committed and a finalization request for every
// task, then waits until they are consumed: duplicates must change nothing. It returns how many
// messages it sent.
func (h *harness) replay(ctx context.Context, settle time.Duration) (int, error) {
	before, err := h.snapshot(ctx)
	if err != nil {
		return 0, err
	}
	var results []json.RawMessage
	rows, err := h.pool.Query(ctx, `
		SELECT s.body FROM chaos.sent s
		WHERE s.queue = 'orchestration_step_results' AND NOT s.body ? 'chaos_duplicate'
		  AND EXISTS (SELECT 1 FROM tasker.workflow_steps w WHERE w.step_uuid::text = s.step_uuid)
		ORDER BY s.id`)
	if err != nil {
		return 0, err
	}
	results, err = pgx.CollectRows(rows, pgx.RowTo[json.RawMessage])
	if err != nil {
		return 0, err
	}
	rows, err = h.pool.Query(ctx, `SELECT json_build_object('task_uuid', task_uuid)::jsonb FROM tasker.workflow_tasks ORDER BY task_uuid`)
	if err != nil {
		return 0, err
	}
	fins, err := pgx.CollectRows(rows, pgx.RowTo[json.RawMessage])
	if err != nil {
		return 0, err
	}
	for _, q := range []struct {
		queue  string
		bodies []json.RawMessage
	}{{messages.QueueStepResults, results}, {messages.QueueTaskFinalizations, fins}} {
		for i := 0; i < len(q.bodies); i += 200 {
			if _, err := h.sendBatch(ctx, q.queue, q.bodies[i:min(len(q.bodies), i+200)]); err != nil {
				return 0, fmt.Errorf("replay: %w", err)
			}
		}
	}
	sent := len(results) + len(fins)
	if st, ok := h.waitQuiescent(ctx, settle); !ok {
		h.problemf("replayed duplicates not consumed within %s: %s", settle, st)
		return sent, nil
	}
	after, err := h.snapshot(ctx)
	if err != nil {
		return sent, err
	}
	if after != before {
		h.problemf("replaying %d duplicate results and %d finalizations changed the state: before %+v, after %+v",
			len(results), len(fins), before, after)
	}
	return sent, nil
}

// resultsPerAttempt counts the step results workers committed per (step_uuid, attempt) of real
// steps: how many (step, attempt) pairs got more than one, the largest count, and examples.
func (h *harness) resultsPerAttempt(ctx context.Context) (multi, most int, examples []string, err error) {
	rows, err := h.pool.Query(ctx, `
		SELECT step_uuid, attempt, count(*)::int FROM chaos.sent s
		WHERE queue = 'orchestration_step_results' AND NOT s.body ? 'chaos_duplicate'
		  AND EXISTS (SELECT 1 FROM tasker.workflow_steps w WHERE w.step_uuid::text = s.step_uuid)
		GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2`)
	if err != nil {
		return 0, 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var step, a string
		var n int
		if err := rows.Scan(&step, &a, &n); err != nil {
			return 0, 0, nil, err
		}
		most = max(most, n)
		if n > 1 {
			multi++
			if len(examples) < evidenceMax {
				examples = append(examples, fmt.Sprintf("step %s attempt %s: %d results", step, a, n))
			}
		}
	}
	return multi, most, examples, rows.Err()
}

// logCounts counts lines of interest in a process log.
type logCounts struct {
	panics, refusedDispatch, batchFailed, redelivered, deadLettered, workerDuplicate, consumerStopped int
	firstPanic                                                                                        string
}

func scanLog(path string) (logCounts, error) {
	var c logCounts
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "panic:"), strings.HasPrefix(line, "fatal error:"),
			strings.Contains(line, `"level":"panic"`), strings.Contains(line, `"level":"fatal"`),
			strings.Contains(line, `"level":"dpanic"`):
			c.panics++
			if c.firstPanic == "" {
				c.firstPanic = textutil.Truncate(line, 300)
			}
		}
		if strings.Contains(line, "dispatched twice (refused)") {
			c.refusedDispatch++
		}
		if strings.Contains(line, "batch transaction failed") {
			c.batchFailed++
		}
		if strings.Contains(line, "message failed; it will be redelivered") {
			c.redelivered++
		}
		if strings.Contains(line, "message dead-lettered") {
			c.deadLettered++
		}
		if strings.Contains(line, "dispatch already deleted") {
			c.workerDuplicate++
		}
		if strings.Contains(line, `"msg":"consumer stopped"`) {
			c.consumerStopped++
		}
	}
	return c, sc.Err()
}

// logTotals adds up the interesting lines of every process log so far.
func (h *harness) logTotals() (total logCounts) {
	for _, n := range h.nodes() {
		if c, err := scanLog(n.log); err == nil {
			total.add(c)
		}
	}
	return total
}

func (t *logCounts) add(c logCounts) {
	t.panics += c.panics
	t.refusedDispatch += c.refusedDispatch
	t.batchFailed += c.batchFailed
	t.redelivered += c.redelivered
	t.deadLettered += c.deadLettered
	t.workerDuplicate += c.workerDuplicate
	t.consumerStopped += c.consumerStopped
}

// checkLogs scans every process log for panics, reports them, and summarizes the interesting
// lines.
func (h *harness) checkLogs() (total logCounts) {
	for _, n := range h.nodes() {
		c, err := scanLog(n.log)
		if err != nil {
			h.problemf("read log %s: %v", n.log, err)
			continue
		}
		if c.panics > 0 {
			h.problemf("%s logged %d panic/fatal line(s), first: %s (log %s)", n.name(), c.panics, c.firstPanic, n.log)
		}
		if c.refusedDispatch > 0 {
			h.notef("%s: the dispatch log refused a second dispatch of one attempt %d time(s) (the guard worked, but something tried; log %s)",
				n.name(), c.refusedDispatch, n.log)
		}
		total.add(c)
	}
	return total
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
