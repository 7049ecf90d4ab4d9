package workflow_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

const backoffTemplate = `
namespace: demo
name: backoff
version: 1.0.0
steps:
  - name: only
    handler: {callable: demo.square}
    retry: {max_attempts: 5, backoff_base: 2s, backoff_max: 5s}
`

// nextRetryAt reads the step's next_retry_at.
func (e *env) nextRetryAt(stepUUID uuid.UUID) time.Time {
	e.t.Helper()
	var at *time.Time
	if err := e.pool.QueryRow(context.Background(),
		"SELECT next_retry_at FROM tasker.workflow_steps WHERE step_uuid = $1", stepUUID).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	if at == nil {
		return time.Time{}
	}
	return *at
}

func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Microsecond)
	rnd := 0.0
	e := newEnv(t, []*template.Template{mustParse(t, backoffTemplate)}, func(o *workflow.EngineOptions) {
		o.Now = func() time.Time { return now }
		o.Rand = func() float64 { return rnd }
	})
	res := e.mustInitialize("backoff", `{"n": 2}`)
	d := e.readOne("only")

	// Equal jitter: the delay after attempt n is in [d/2, d] for d = 2s * 2^(n-1) capped at
	// 5s, rounded up to whole seconds.
	for _, c := range []struct {
		rnd  float64
		want time.Duration
	}{
		{rnd: 0.5, want: 2 * time.Second}, // attempt 1: d 2s, 1.5s -> 2s
		{rnd: 0, want: 2 * time.Second},   // attempt 2: d 4s, 2s
		{rnd: 1, want: 5 * time.Second},   // attempt 3: d 8s capped at 5s
	} {
		rnd = c.rnd
		attempt := d.body.Attempt
		out := e.mustProcess(failed(t, d.body, "failed", true, nil))
		if out.Action != workflow.ActionRetryScheduled || out.Enqueued != 1 {
			t.Fatalf("attempt %d: %+v", attempt, out)
		}
		e.assertDelay(d.body.StepUUID, attempt+1, c.want)
		if got := e.nextRetryAt(d.body.StepUUID); !got.Equal(now.Add(c.want)) {
			t.Errorf("attempt %d: next_retry_at %v, want %v", attempt, got, now.Add(c.want))
		}
		e.fastForward()
		d = e.readOne("only")
		if d.body.Attempt != attempt+1 {
			t.Fatalf("dispatch attempt %d, want %d", d.body.Attempt, attempt+1)
		}
	}
	// Attempt 4 of 5: the hint of 0 (no wait) is honoured.
	rnd = 1
	zero := 0.0
	out := e.mustProcess(failed(t, d.body, "failed", true, &zero))
	if out.Action != workflow.ActionRetryScheduled {
		t.Fatalf("attempt 4: %+v", out)
	}
	e.assertDelay(d.body.StepUUID, 5, 0)
	d = e.readOne("only")
	// Attempt 5 of 5 fails: no retry left.
	out = e.mustProcess(failed(t, d.body, "failed", true, nil))
	if out.Action != workflow.ActionFailed || out.Enqueued != 0 || out.Final.State != workflow.TaskError {
		t.Fatalf("last attempt: %+v %+v", out, out.Final)
	}
	if n := e.count("SELECT count(*) FROM pgmq.q_worker_demo_queue WHERE read_ct = 0"); n != 0 {
		t.Fatalf("%d dispatches queued after the last attempt", n)
	}
	s := e.steps(res.TaskUUID)["only"]
	if s.state != workflow.StepError || s.attempts != 5 || stepError(t, s.lastError).Message != "boom at attempt 5" {
		t.Fatalf("step %+v", s)
	}
}

func TestBackoffHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []*template.Template{mustParse(t, backoffTemplate)}, func(o *workflow.EngineOptions) {
		o.Rand = func() float64 { return 0 }
	})
	e.mustInitialize("backoff", `{"n": 2}`)
	d := e.readOne("only")
	for _, c := range []struct {
		hint float64
		want time.Duration
	}{
		{hint: 3, want: 3 * time.Second},    // honoured, no jitter
		{hint: 60, want: 5 * time.Second},   // capped at backoff_max
		{hint: 0.2, want: 1 * time.Second},  // rounded up to a whole second
		{hint: 1e10, want: 5 * time.Second}, // huge: capped, not overflowed
	} {
		attempt := d.body.Attempt
		out := e.mustProcess(failed(t, d.body, "failed", true, &c.hint))
		if out.Action != workflow.ActionRetryScheduled {
			t.Fatalf("attempt %d: %+v", attempt, out)
		}
		e.assertDelay(d.body.StepUUID, attempt+1, c.want)
		e.fastForward()
		d = e.readOne("only")
	}
}

const exhaustTemplate = `
namespace: demo
name: exhaust
version: 1.0.0
steps:
  - name: start
    handler: {callable: demo.square}
  - name: bad
    handler: {callable: demo.square}
    dependencies: [start]
    retry: {max_attempts: 2, backoff_base: 1s, backoff_max: 1s}
  - name: side
    handler: {callable: demo.double}
    dependencies: [start]
  - name: after_bad
    handler: {callable: demo.double}
    dependencies: [bad]
  - name: join
    handler: {callable: demo.sum}
    dependencies: [after_bad, side]
`

func TestMaxAttemptsExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []*template.Template{mustParse(t, exhaustTemplate)})
	res := e.mustInitialize("exhaust", `{"n": 3}`)
	e.mustProcess(compute(t, e.readOne("start").body))
	ds := e.readDispatches()
	if len(ds) != 2 {
		t.Fatalf("after start: %s", names(ds))
	}
	var bad, side dispatch
	for _, d := range ds {
		if d.body.StepName == "bad" {
			bad = d
		} else {
			side = d
		}
	}
	out := e.mustProcess(failed(t, bad.body, "failed", true, nil))
	if out.Action != workflow.ActionRetryScheduled || out.Final.State != workflow.TaskStepsInProcess {
		t.Fatalf("bad attempt 1: %+v %+v", out, out.Final)
	}
	e.fastForward()
	bad = e.readOne("bad")
	out = e.mustProcess(failed(t, bad.body, "failed", true, nil))
	// side is still running: the task goes on.
	if out.Action != workflow.ActionFailed || out.Enqueued != 0 || out.Final.State != workflow.TaskStepsInProcess || out.Final.Changed {
		t.Fatalf("bad attempt 2: %+v %+v", out, out.Final)
	}
	if ts := e.task(res.TaskUUID); ts.State != workflow.TaskStepsInProcess || ts.CompletedAt != nil || ts.StepsError != 1 {
		t.Fatalf("task %+v", ts)
	}
	out = e.mustProcess(compute(t, side.body))
	if !out.Accepted || out.Enqueued != 0 || out.Final.State != workflow.TaskError || !out.Final.Changed {
		t.Fatalf("side: %+v %+v", out, out.Final)
	}
	ts := e.task(res.TaskUUID)
	if ts.State != workflow.TaskError || ts.CompletedAt == nil || ts.StepsError != 1 || ts.StepsComplete != 2 || ts.StepsTotal != 5 {
		t.Fatalf("task %+v", ts)
	}
	want := map[string]string{"start": "complete", "bad": "error", "side": "complete", "after_bad": "cancelled", "join": "cancelled"}
	for name, s := range e.steps(res.TaskUUID) {
		if s.state != want[name] {
			t.Errorf("step %s is %s, want %s", name, s.state, want[name])
		}
	}
	if n := e.count(`SELECT count(*) FROM tasker.workflow_step_transitions
		WHERE task_uuid = $1 AND from_state = 'pending' AND to_state = 'cancelled'`, res.TaskUUID); n != 2 {
		t.Errorf("%d cancel transitions, want 2", n)
	}
	if n := e.count("SELECT count(*) FROM pgmq.q_worker_demo_queue WHERE read_ct = 0"); n != 0 {
		t.Errorf("%d unread dispatches left", n)
	}
	fin, err := e.finalize(res.TaskUUID)
	if err != nil || fin.Changed || fin.State != workflow.TaskError {
		t.Errorf("finalize a failed task: %+v %v", fin, err)
	}
}

func TestErrorStatusNeverRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("linear", `{"n": 6}`)
	d := e.readOne("start")
	out := e.mustProcess(failed(t, d.body, "error", true, nil)) // retryable is ignored for status error
	if !out.Accepted || out.Action != workflow.ActionFailed || out.Enqueued != 0 || out.Final.State != workflow.TaskError {
		t.Fatalf("%+v %+v", out, out.Final)
	}
	if n := e.count("SELECT count(*) FROM pgmq.q_worker_demo_queue WHERE read_ct = 0"); n != 0 {
		t.Fatalf("%d dispatches after an error", n)
	}
	steps := e.steps(res.TaskUUID)
	if s := steps["start"]; s.state != workflow.StepError || s.attempts != 1 || s.result != nil ||
		stepError(t, s.lastError) != (messages.StepError{Message: "boom at attempt 1", ErrorType: "test", Retryable: true}) {
		t.Fatalf("start %+v", s)
	}
	for _, name := range []string{"double", "add_ten", "finish"} {
		if s := steps[name]; s.state != workflow.StepCancelled || s.attempts != 0 {
			t.Errorf("%s %+v", name, s)
		}
	}
	if ts := e.task(res.TaskUUID); ts.State != workflow.TaskError || ts.CompletedAt == nil || ts.StepsError != 1 {
		t.Fatalf("task %+v", ts)
	}
}

func TestNotRetryableFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("diamond", `{"n": 2}`)
	e.mustProcess(compute(t, e.readOne("start").body))
	for _, d := range e.readDispatches() {
		e.mustProcess(compute(t, d.body))
	}
	// join has retry {retryable: false}: a retryable failure is final.
	join := e.readOne("join")
	out := e.mustProcess(failed(t, join.body, "failed", true, nil))
	if out.Action != workflow.ActionFailed || out.Final.State != workflow.TaskError {
		t.Fatalf("%+v %+v", out, out.Final)
	}
	// A worker-declared non-retryable failure of a retryable step is final too.
	res2 := e.mustInitialize("linear", `{"n": 2}`)
	out = e.mustProcess(failed(t, e.readOne("start").body, "failed", false, nil))
	if out.Action != workflow.ActionFailed || out.Final.State != workflow.TaskError {
		t.Fatalf("%+v %+v", out, out.Final)
	}
	if s := e.steps(res2.TaskUUID)["start"]; s.state != workflow.StepError || s.attempts != 1 {
		t.Fatalf("start %+v", s)
	}
	_ = res
}

func TestLateAndDuplicateResults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("retry", `{"n": 6}`)
	prepare := e.readOne("prepare")
	done := compute(t, prepare.body)
	if out := e.mustProcess(done); !out.Accepted {
		t.Fatalf("first result not accepted: %+v", out)
	}
	flaky1 := e.readOne("flaky")

	ignored := func(what string, r messages.StepResult) {
		t.Helper()
		before := e.snapshot()
		out := e.mustProcess(r)
		if out.Accepted || out.Action != workflow.ActionIgnored || out.Enqueued != 0 || out.Final != nil {
			t.Errorf("%s: %+v", what, out)
		}
		if after := e.snapshot(); after != before {
			t.Errorf("%s changed the database:\nbefore %s\nafter  %s", what, before, after)
		}
	}
	ignored("duplicate result of a completed step", done)
	ignored("failure of a completed step", failed(t, prepare.body, "failed", true, nil))

	wrong := flaky1.body
	wrong.Attempt = 2
	ignored("result for an attempt not dispatched yet", compute(t, wrong))

	// flaky attempt 1 fails: attempt 2 is dispatched.
	if out := e.mustProcess(compute(t, flaky1.body)); out.Action != workflow.ActionRetryScheduled {
		t.Fatalf("flaky attempt 1: %+v", out)
	}
	ignored("duplicate failure of attempt 1", compute(t, flaky1.body))
	late := flaky1.body
	late.Attempt = 1
	ignored("late success of attempt 1", completed(t, late, 99))
	if s := e.steps(res.TaskUUID)["flaky"]; s.state != workflow.StepWaitingForRetry || s.attempts != 2 {
		t.Fatalf("flaky %+v", s)
	}
}

func TestUnknownStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.mustInitialize("linear", `{"n": 1}`)
	b := e.mustInitialize("linear", `{"n": 2}`)
	ds := e.readDispatches()
	var ofA messages.StepDispatch
	for _, d := range ds {
		if d.body.TaskUUID == a.TaskUUID {
			ofA = d.body
		}
	}
	before := e.snapshot()

	unknown := ofA
	unknown.StepUUID = uuid.New()
	_, err := e.process(compute(t, unknown))
	p := wantPermanent(t, err, "unknown_step")
	if !strings.Contains(p.Error(), unknown.StepUUID.String()) {
		t.Errorf("error does not name the step: %v", p)
	}

	otherTask := ofA
	otherTask.TaskUUID = b.TaskUUID
	_, err = e.process(compute(t, otherTask))
	_ = wantPermanent(t, err, "unknown_step")

	noTask := ofA
	noTask.TaskUUID = uuid.New()
	_, err = e.process(compute(t, noTask))
	_ = wantPermanent(t, err, "unknown_step")

	_, err = e.finalize(uuid.New())
	_ = wantPermanent(t, err, "unknown_task")

	if after := e.snapshot(); after != before {
		t.Errorf("unknown steps changed the database:\nbefore %s\nafter  %s", before, after)
	}
}
