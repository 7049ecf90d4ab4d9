package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/workflow"
)

func TestTemplatesRunToCompletion(t *testing.T) {
	t.Parallel()
	want := map[string]map[string]string{
		"linear":  {"start": "36", "double": "72", "add_ten": "82", "finish": "82"},
		"diamond": {"start": "36", "left": "1296", "right": "1296", "join": "2592"},
		"tree": {"root": "36", "b1": "72", "b2": "37", "l1": "5184", "l2": "144", "l3": "39",
			"l4": "74", "merge": "5441"},
		"mixed": {"ingest": "36", "normalize": "72", "enrich": "75", "score": "144", "audit": "37",
			"rank": "20736", "report": "20848"},
		"retry": {"prepare": "36", "flaky": "36", "finish": "36"},
	}
	for name, results := range want {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			res := e.mustInitialize(name, `{"n": 6}`)
			roots := len(e.templates[name].Roots())
			if res.StepsEnqueued != roots {
				t.Errorf("StepsEnqueued = %d, want %d roots", res.StepsEnqueued, roots)
			}
			if ts := e.task(res.TaskUUID); ts.State != workflow.TaskStepsInProcess {
				t.Errorf("after initialize: task %s, want steps_in_process", ts.State)
			}
			handled := e.run(res.TaskUUID)

			ts := e.task(res.TaskUUID)
			if ts.State != workflow.TaskComplete || ts.CompletedAt == nil ||
				ts.StepsTotal != len(results) || ts.StepsComplete != len(results) || ts.StepsError != 0 {
				t.Errorf("task status %+v", ts)
			}
			if ts.CorrelationID != res.CorrelationID || ts.Namespace != "demo" || ts.Name != name || ts.Version != "1.0.0" {
				t.Errorf("task status %+v, correlation id %s", ts, res.CorrelationID)
			}
			steps := e.steps(res.TaskUUID)
			for step, value := range results {
				s := steps[step]
				if s.state != workflow.StepComplete || string(s.result) != value {
					t.Errorf("step %s: %s with result %s, want complete with %s", step, s.state, s.result, value)
				}
			}
			wantDispatches := len(results)
			if name == "retry" {
				wantDispatches += 2
				if s := steps["flaky"]; s.attempts != 3 || stepError(t, s.lastError).ErrorType != "flaky" {
					t.Errorf("flaky: attempts %d, last_error %s", s.attempts, s.lastError)
				}
			}
			if handled != wantDispatches {
				t.Errorf("worker handled %d dispatches, want %d", handled, wantDispatches)
			}
			if n := e.count("SELECT count(*) FROM tasker.workflow_step_dispatches WHERE task_uuid = $1", res.TaskUUID); n != wantDispatches {
				t.Errorf("dispatch log has %d rows, want %d", n, wantDispatches)
			}
			// History: the task went pending -> steps_in_process -> complete.
			var hist string
			if err := e.pool.QueryRow(context.Background(), `
				SELECT string_agg(coalesce(from_state, '-') || '>' || to_state, ' ' ORDER BY id)
				FROM tasker.workflow_task_transitions WHERE task_uuid = $1`, res.TaskUUID).Scan(&hist); err != nil {
				t.Fatal(err)
			}
			if hist != "->pending pending>steps_in_process steps_in_process>complete" &&
				!(name == "retry" && strings.HasPrefix(hist, "->pending pending>steps_in_process")) {
				t.Errorf("task history %q", hist)
			}
			// Every step: created pending, enqueued, ..., complete.
			if n := e.count(`SELECT count(*) FROM tasker.workflow_step_transitions
				WHERE task_uuid = $1 AND to_state = 'complete'`, res.TaskUUID); n != len(results) {
				t.Errorf("%d complete transitions, want %d", n, len(results))
			}
			// A finished task stays finished.
			fin, err := e.finalize(res.TaskUUID)
			if err != nil || fin.Changed || fin.State != workflow.TaskComplete || fin.Enqueued != 0 {
				t.Errorf("finalize a complete task: %+v, %v", fin, err)
			}
		})
	}
}

func TestDispatchBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	req := request(t, "linear", `{"n": 6, "extra": {"b": 1, "a": [1, 2]}}`, "")
	res, err := e.initialize(req)
	if err != nil {
		t.Fatal(err)
	}
	d := e.readOne("start")
	b := d.body
	if b.TaskUUID != res.TaskUUID || b.CorrelationID != req.TaskRequest.CorrelationID || b.Namespace != "demo" ||
		b.TaskName != "linear" || b.TaskVersion != "1.0.0" || b.StepName != "start" || b.Attempt != 1 ||
		b.MaxAttempts != 3 || b.Handler.Callable != "demo.square" || string(b.Handler.Initialization) != "{}" ||
		b.DependencyResults == nil || len(b.DependencyResults) != 0 {
		t.Errorf("dispatch %+v", b)
	}
	var ctx map[string]any
	if err := json.Unmarshal(b.TaskContext, &ctx); err != nil || ctx["n"] != float64(6) {
		t.Errorf("task_context %s", b.TaskContext)
	}
	e.mustProcess(compute(t, b))
	d = e.readOne("double")
	e.mustProcess(compute(t, d.body))
	d = e.readOne("add_ten")
	if !jsonEqual(t, d.body.Handler.Initialization, `{"addend": 10}`) || string(d.body.DependencyResults["double"]) != "72" {
		t.Errorf("add_ten dispatch: initialization %s, dependency_results %v", d.body.Handler.Initialization, d.body.DependencyResults)
	}
	// The raw message has exactly the step dispatch keys of docs/protocol.md.
	var raw map[string]json.RawMessage
	if err := e.pool.QueryRow(context.Background(),
		"SELECT message FROM pgmq.q_worker_demo_queue WHERE msg_id = $1", d.msgID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"task_uuid", "step_uuid", "correlation_id", "namespace", "task_name", "task_version",
		"step_name", "handler", "attempt", "max_attempts", "task_context", "dependency_results"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("dispatch body lacks %q: %v", k, raw)
		}
	}
}

// TestJoinDispatchedOnce processes the results of left and right at the same moment in two
// transactions; the task lock must let exactly one of them dispatch join.
func TestJoinDispatchedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for i := range 20 {
		res := e.mustInitialize("diamond", fmt.Sprintf(`{"n": %d}`, i+1))
		start := e.readOne("start")
		e.mustProcess(compute(t, start.body))
		ds := e.readDispatches()
		if len(ds) != 2 {
			t.Fatalf("after start: %s", names(ds))
		}
		var (
			wg      sync.WaitGroup
			ready   = make(chan struct{})
			results = make([]int, 2)
			errs    = make([]error, 2)
		)
		for j, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				result := compute(t, d.body)
				<-ready
				out, err := e.process(result)
				results[j], errs[j] = out.Enqueued, err
			}()
		}
		close(ready)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
		}
		if results[0]+results[1] != 1 {
			t.Fatalf("iteration %d: join enqueued %d times (%v)", i, results[0]+results[1], results)
		}
		join := e.readOne("join")
		if join.body.TaskUUID != res.TaskUUID {
			t.Fatalf("join of another task")
		}
		e.checkDispatch(join.body)
		if n := e.count(`SELECT count(*) FROM tasker.workflow_step_dispatches d JOIN tasker.workflow_steps s USING (step_uuid)
			WHERE s.task_uuid = $1 AND s.name = 'join'`, res.TaskUUID); n != 1 {
			t.Fatalf("iteration %d: join dispatched %d times", i, n)
		}
		e.mustProcess(compute(t, join.body))
		if ts := e.task(res.TaskUUID); ts.State != workflow.TaskComplete {
			t.Fatalf("iteration %d: task %s", i, ts.State)
		}
	}
}

// vtIn returns how far in the future a dispatch message becomes visible, by the database clock.
func (e *env) vtIn(stepUUID uuid.UUID, attempt int) time.Duration {
	e.t.Helper()
	var secs float64
	err := e.pool.QueryRow(context.Background(), `
		SELECT extract(epoch FROM vt - clock_timestamp())::float8 FROM pgmq.q_worker_demo_queue
		WHERE message->>'step_uuid' = $1::text AND (message->>'attempt')::int = $2`, stepUUID, attempt).Scan(&secs)
	if err != nil {
		e.t.Fatalf("vt of step %s attempt %d: %v", stepUUID, attempt, err)
	}
	return time.Duration(secs * float64(time.Second))
}

// assertDelay checks a retry dispatch's delay: vt is set when the message is sent, a moment
// before this check, so it is a little under the delay.
func (e *env) assertDelay(stepUUID uuid.UUID, attempt int, want time.Duration) {
	e.t.Helper()
	got := e.vtIn(stepUUID, attempt)
	if got > want+100*time.Millisecond || got < want-1500*time.Millisecond {
		e.t.Errorf("attempt %d visible in %v, want about %v", attempt, got, want)
	}
	var delay int
	if err := e.pool.QueryRow(context.Background(),
		"SELECT delay_seconds FROM tasker.workflow_step_dispatches WHERE step_uuid = $1 AND attempt = $2",
		stepUUID, attempt).Scan(&delay); err != nil {
		e.t.Fatal(err)
	}
	if time.Duration(delay)*time.Second != want {
		e.t.Errorf("dispatch log: attempt %d delay %ds, want %v", attempt, delay, want)
	}
}

func TestRetryFailsTwiceThenCompletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("retry", `{"n": 6}`)
	prepare := e.readOne("prepare")
	e.mustProcess(compute(t, prepare.body))

	for attempt := 1; attempt <= 2; attempt++ {
		d := e.readOne("flaky")
		if d.body.Attempt != attempt {
			t.Fatalf("flaky dispatch attempt %d, want %d", d.body.Attempt, attempt)
		}
		e.checkDispatch(d.body)
		out := e.mustProcess(compute(t, d.body))
		if !out.Accepted || out.Action != workflow.ActionRetryScheduled || out.Enqueued != 1 {
			t.Fatalf("attempt %d: %+v", attempt, out)
		}
		if out.Final == nil || out.Final.State != workflow.TaskWaitingForRetry {
			t.Fatalf("attempt %d: final %+v", attempt, out.Final)
		}
		s := e.steps(res.TaskUUID)["flaky"]
		if s.state != workflow.StepWaitingForRetry || s.attempts != attempt+1 || len(s.lastError) == 0 {
			t.Fatalf("after attempt %d: %+v", attempt, s)
		}
		if ts := e.task(res.TaskUUID); ts.State != workflow.TaskWaitingForRetry {
			t.Fatalf("after attempt %d: task %s", attempt, ts.State)
		}
		// backoff 50ms (then 100ms) with jitter, rounded up to PGMQ's whole second.
		e.assertDelay(d.body.StepUUID, attempt+1, time.Second)
		if len(e.readDispatches()) != 0 {
			t.Fatalf("retry visible before its delay")
		}
		if e.fastForward() != 1 {
			t.Fatal("no delayed retry to fast-forward")
		}
	}
	d := e.readOne("flaky")
	if d.body.Attempt != 3 {
		t.Fatalf("third dispatch is attempt %d", d.body.Attempt)
	}
	out := e.mustProcess(compute(t, d.body))
	if !out.Accepted || out.Action != workflow.ActionCompleted || out.Enqueued != 1 || out.Final.State != workflow.TaskStepsInProcess {
		t.Fatalf("attempt 3: %+v %+v", out, out.Final)
	}
	finish := e.readOne("finish")
	e.checkDispatch(finish.body)
	e.mustProcess(compute(t, finish.body))
	if ts := e.task(res.TaskUUID); ts.State != workflow.TaskComplete {
		t.Fatalf("task %s", ts.State)
	}
	s := e.steps(res.TaskUUID)["flaky"]
	if s.state != workflow.StepComplete || s.attempts != 3 || string(s.result) != "36" || len(s.lastError) == 0 {
		t.Fatalf("flaky %+v", s)
	}
}
