package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

const workerQueue = "worker_demo_queue"

// env is one test's database with the testdata templates registered and an engine.
type env struct {
	t         testing.TB
	pool      *pgxpool.Pool
	eng       *workflow.Engine
	templates map[string]*template.Template // by name
}

type envOption func(*workflow.EngineOptions)

func newEnv(t testing.TB, extra []*template.Template, opts ...envOption) *env {
	t.Helper()
	db := testdb.New(t, 8)
	tmpls, err := template.LoadDir("../testdata/templates")
	if err != nil {
		t.Fatalf("load templates: %v", err)
	}
	tmpls = append(tmpls, extra...)
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	if err := workflow.Register(context.Background(), db.Pool, tmpls, log); err != nil {
		t.Fatalf("register: %v", err)
	}
	eo := workflow.EngineOptions{Logger: log}
	for _, o := range opts {
		o(&eo)
	}
	e := &env{t: t, pool: db.Pool, eng: workflow.NewEngine(eo), templates: map[string]*template.Template{}}
	for _, tm := range tmpls {
		e.templates[tm.Name] = tm
	}
	return e
}

func mustParse(t testing.TB, src string) *template.Template {
	t.Helper()
	tm, err := template.Parse(t.Name()+".yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse template: %v", err)
	}
	return tm
}

// inTx runs fn in a transaction and commits it, like the actor does.
func (e *env) inTx(fn func(tx pgx.Tx) error) error {
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// request builds a task request through the wire format.
func request(t testing.TB, name string, context string, idempotencyKey string) messages.TaskRequest {
	t.Helper()
	body := map[string]any{
		"request_id": uuid.NewString(),
		"task_request": map[string]any{
			"namespace": "demo", "name": name, "version": "1.0.0",
			"context":   json.RawMessage(context),
			"initiator": "test", "source_system": "tests", "reason": t.Name(), "tags": []string{"test"},
		},
	}
	if idempotencyKey != "" {
		body["task_request"].(map[string]any)["idempotency_key"] = idempotencyKey
	}
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := messages.DecodeTaskRequest(raw)
	if err != nil {
		t.Fatalf("decode task request: %v", err)
	}
	return req
}

func (e *env) initialize(req messages.TaskRequest) (commands.TaskInitializeResult, error) {
	var res commands.TaskInitializeResult
	err := e.inTx(func(tx pgx.Tx) error {
		var err error
		res, err = one(e.eng.InitializeTasks(context.Background(), tx, []messages.TaskRequest{req}))
		return err
	})
	return res, err
}

func (e *env) mustInitialize(name, ctxJSON string) commands.TaskInitializeResult {
	e.t.Helper()
	res, err := e.initialize(request(e.t, name, ctxJSON, ""))
	if err != nil {
		e.t.Fatalf("initialize %s: %v", name, err)
	}
	if !res.Created {
		e.t.Fatalf("initialize %s: not created (duplicate of %s)", name, res.TaskUUID)
	}
	return res
}

func (e *env) process(res messages.StepResult) (commands.StepProcessResult, error) {
	var out commands.StepProcessResult
	err := e.inTx(func(tx pgx.Tx) error {
		var err error
		out, err = one(e.eng.ProcessStepResults(context.Background(), tx, []messages.StepResult{res}))
		return err
	})
	return out, err
}

func (e *env) mustProcess(res messages.StepResult) commands.StepProcessResult {
	e.t.Helper()
	out, err := e.process(res)
	if err != nil {
		e.t.Fatalf("process result of step %s attempt %d: %v", res.StepUUID, res.Attempt, err)
	}
	return out
}

func (e *env) finalize(taskUUID uuid.UUID) (commands.TaskFinalizationResult, error) {
	var out commands.TaskFinalizationResult
	err := e.inTx(func(tx pgx.Tx) error {
		var err error
		out, err = one(e.eng.FinalizeTasks(context.Background(), tx, []uuid.UUID{taskUUID}))
		return err
	})
	return out, err
}

// one unwraps the result of a batch of one.
func one[T any](results []actor.Result[T], err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if len(results) != 1 {
		return zero, fmt.Errorf("%d results for a batch of 1", len(results))
	}
	return results[0].Value, results[0].Err
}

// dispatch is a step dispatch read from the worker queue.
type dispatch struct {
	msgID int64
	vt    time.Time
	body  messages.StepDispatch
}

// readDispatches claims every visible dispatch (like a worker: pgmq.read with a visibility
// timeout) and decodes it with the worker-side decoder.
func (e *env) readDispatches() []dispatch {
	e.t.Helper()
	msgs, err := pgmq.Read(context.Background(), e.pool, workerQueue, 30*time.Second, 100)
	if err != nil {
		e.t.Fatalf("read %s: %v", workerQueue, err)
	}
	out := make([]dispatch, len(msgs))
	for i, m := range msgs {
		d, err := messages.DecodeStepDispatch(m.Body)
		if err != nil {
			e.t.Fatalf("decode dispatch %d: %v\n%s", m.ID, err, m.Body)
		}
		out[i] = dispatch{msgID: m.ID, vt: m.VT, body: d}
	}
	return out
}

// readOne reads exactly one dispatch, for the named step.
func (e *env) readOne(step string) dispatch {
	e.t.Helper()
	ds := e.readDispatches()
	if len(ds) != 1 || ds[0].body.StepName != step {
		e.t.Fatalf("want one dispatch of %s, got %s", step, names(ds))
	}
	return ds[0]
}

func names(ds []dispatch) string {
	s := "["
	for i, d := range ds {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s#%d", d.body.StepName, d.body.Attempt)
	}
	return s + "]"
}

// fastForward makes delayed (never read) dispatches visible now, in place of waiting for their
// delay; it returns how many it moved.
func (e *env) fastForward() int64 {
	e.t.Helper()
	ct, err := e.pool.Exec(context.Background(),
		"UPDATE pgmq.q_worker_demo_queue SET vt = clock_timestamp() WHERE vt > clock_timestamp() AND read_ct = 0")
	if err != nil {
		e.t.Fatalf("fast forward: %v", err)
	}
	return ct.RowsAffected()
}

// wire turns a worker's result into the wire JSON and decodes it like the consumer does.
func wire(t testing.TB, d messages.StepDispatch, result map[string]any) messages.StepResult {
	t.Helper()
	raw, err := json.Marshal(map[string]any{
		"task_uuid": d.TaskUUID, "step_uuid": d.StepUUID, "correlation_id": d.CorrelationID,
		"attempt": d.Attempt, "result": result,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := messages.DecodeStepResult(raw)
	if err != nil {
		t.Fatalf("decode step result: %v\n%s", err, raw)
	}
	return res
}

func completed(t testing.TB, d messages.StepDispatch, value any) messages.StepResult {
	t.Helper()
	return wire(t, d, map[string]any{"success": true, "status": "completed", "result": value,
		"metadata": map[string]any{"worker_id": "test"}})
}

func failed(t testing.TB, d messages.StepDispatch, status string, retryable bool, hintSeconds *float64) messages.StepResult {
	t.Helper()
	r := map[string]any{
		"success": false, "status": status,
		"error": map[string]any{"message": "boom at attempt " + strconv.Itoa(d.Attempt), "error_type": "test", "retryable": retryable},
	}
	if hintSeconds != nil {
		r["orchestration_metadata"] = map[string]any{"backoff_hint": map[string]any{"delay_seconds": *hintSeconds}}
	}
	return wire(t, d, r)
}

// compute runs a demo callable as described at the top of testdata/templates/*.yaml.
func compute(t testing.TB, d messages.StepDispatch) messages.StepResult {
	t.Helper()
	var input int64
	if len(d.DependencyResults) == 0 {
		var c struct{ N int64 }
		if err := json.Unmarshal(d.TaskContext, &c); err != nil {
			t.Fatalf("task_context: %v", err)
		}
		input = c.N
	} else {
		for name, raw := range d.DependencyResults {
			var v int64
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("dependency result %s = %s: %v", name, raw, err)
			}
			input += v
		}
	}
	var init struct {
		Addend           int64 `json:"addend"`
		SucceedOnAttempt int   `json:"succeed_on_attempt"`
	}
	if err := json.Unmarshal(d.Handler.Initialization, &init); err != nil {
		t.Fatalf("initialization: %v", err)
	}
	switch d.Handler.Callable {
	case "demo.square":
		return completed(t, d, input*input)
	case "demo.double":
		return completed(t, d, input*2)
	case "demo.add":
		return completed(t, d, input+init.Addend)
	case "demo.sum":
		return completed(t, d, input)
	case "demo.flaky":
		if d.Attempt < init.SucceedOnAttempt {
			r := failed(t, d, "failed", true, nil)
			r.Result.Error.ErrorType = "flaky"
			return r
		}
		return completed(t, d, input)
	default:
		t.Fatalf("unknown callable %q", d.Handler.Callable)
		return messages.StepResult{}
	}
}

// stepState is one row of tasker.step_status.
type stepState struct {
	state     string
	attempts  int
	result    json.RawMessage
	lastError json.RawMessage
}

func (e *env) steps(taskUUID uuid.UUID) map[string]stepState {
	e.t.Helper()
	_, steps, err := workflow.GetTaskStatus(context.Background(), e.pool, taskUUID)
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	out := map[string]stepState{}
	for _, s := range steps {
		out[s.Name] = stepState{state: s.State, attempts: s.Attempts, result: s.Result, lastError: s.LastError}
	}
	return out
}

func (e *env) task(taskUUID uuid.UUID) workflow.TaskStatus {
	e.t.Helper()
	ts, _, err := workflow.GetTaskStatus(context.Background(), e.pool, taskUUID)
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	return ts
}

// checkDispatch asserts that a dispatch is well-formed and sent at the right time: every
// parent of the step is complete and dependency_results holds exactly the parents' results.
func (e *env) checkDispatch(d messages.StepDispatch) {
	e.t.Helper()
	tm := e.templates[d.TaskName]
	if tm == nil {
		e.t.Fatalf("dispatch of unknown template %q", d.TaskName)
	}
	st, ok := tm.Step(d.StepName)
	if !ok {
		e.t.Fatalf("dispatch of unknown step %q", d.StepName)
	}
	if d.Namespace != "demo" || d.TaskVersion != "1.0.0" || d.Handler.Callable != st.Handler.Callable ||
		d.MaxAttempts != st.Retry.MaxAttempts || d.CorrelationID == uuid.Nil {
		e.t.Errorf("dispatch of %s: unexpected fields %+v", d.StepName, d)
	}
	steps := e.steps(d.TaskUUID)
	if got := steps[d.StepName]; got.attempts != d.Attempt {
		e.t.Errorf("dispatch of %s attempt %d: step has attempts %d", d.StepName, d.Attempt, got.attempts)
	}
	if len(d.DependencyResults) != len(st.Dependencies) {
		e.t.Errorf("dispatch of %s: dependency_results %v, want the results of %v", d.StepName, d.DependencyResults, st.Dependencies)
	}
	for _, p := range st.Dependencies {
		ps := steps[p]
		if ps.state != workflow.StepComplete {
			e.t.Errorf("step %s dispatched while its parent %s is %s", d.StepName, p, ps.state)
		}
		if got := d.DependencyResults[p]; string(got) != string(ps.result) {
			e.t.Errorf("dispatch of %s: dependency_results[%s] = %s, want %s", d.StepName, p, got, ps.result)
		}
	}
}

// run plays the worker until taskUUID is finished: it reads dispatches, checks them, computes
// results and hands them to the engine, fast-forwarding delayed retries. It returns how many
// dispatches it handled.
func (e *env) run(taskUUID uuid.UUID) int {
	e.t.Helper()
	handled := 0
	for range 200 {
		if e.task(taskUUID).Finished() {
			return handled
		}
		ds := e.readDispatches()
		if len(ds) == 0 {
			if e.fastForward() == 0 {
				e.t.Fatalf("task %s is %s but nothing is queued", taskUUID, e.task(taskUUID).State)
			}
			continue
		}
		for _, d := range ds {
			e.checkDispatch(d.body)
			out := e.mustProcess(compute(e.t, d.body))
			if !out.Accepted {
				e.t.Fatalf("result of %s attempt %d not accepted", d.body.StepName, d.body.Attempt)
			}
			if _, err := pgmq.Delete(context.Background(), e.pool, workerQueue, d.msgID); err != nil {
				e.t.Fatal(err)
			}
			handled++
		}
	}
	e.t.Fatalf("task %s did not finish", taskUUID)
	return handled
}

// snapshot summarizes everything a handler could change, to assert that nothing did.
func (e *env) snapshot() string {
	e.t.Helper()
	var s string
	err := e.pool.QueryRow(context.Background(), `
		SELECT concat_ws(' | ',
		  (SELECT count(*) FROM tasker.workflow_tasks),
		  (SELECT string_agg(task_uuid::text || ':' || state || ':' || updated_at::text, ',' ORDER BY task_uuid) FROM tasker.workflow_tasks),
		  (SELECT string_agg(step_uuid::text || ':' || state || ':' || attempts || ':' || coalesce(result::text, '-') || ':' ||
		          coalesce(last_error::text, '-') || ':' || updated_at::text, ',' ORDER BY step_uuid) FROM tasker.workflow_steps),
		  (SELECT count(*) FROM tasker.workflow_task_transitions),
		  (SELECT count(*) FROM tasker.workflow_step_transitions),
		  (SELECT count(*) FROM tasker.workflow_step_dispatches),
		  (SELECT count(*) FROM pgmq.q_worker_demo_queue))`).Scan(&s)
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	return s
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("count %q: %v", sql, err)
	}
	return n
}

func wantPermanent(t testing.TB, err error, reason string) *commands.PermanentError {
	t.Helper()
	if err == nil {
		t.Fatalf("want a permanent error %q, got nil", reason)
	}
	p, ok := commands.AsPermanent(err)
	if !ok {
		t.Fatalf("want a permanent error %q, got %v", reason, err)
	}
	if p.Reason != reason {
		t.Fatalf("permanent error reason = %q, want %q (%v)", p.Reason, reason, err)
	}
	return p
}

// jsonEqual compares two JSON documents by value (jsonb reformats what it stores).
func jsonEqual(t testing.TB, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad JSON in test: %s", want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}

// stepError decodes a last_error.
func stepError(t testing.TB, raw []byte) messages.StepError {
	t.Helper()
	var se messages.StepError
	if err := json.Unmarshal(raw, &se); err != nil {
		t.Fatalf("last_error %s: %v", raw, err)
	}
	return se
}

func decodeDispatch(t testing.TB, body []byte) messages.StepDispatch {
	t.Helper()
	d, err := messages.DecodeStepDispatch(body)
	if err != nil {
		t.Fatalf("decode dispatch: %v\n%s", err, body)
	}
	return d
}
