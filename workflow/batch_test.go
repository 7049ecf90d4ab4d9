package workflow_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/workflow"
)

// processBatch hands results to the engine in one call and one transaction, like the actor
// does with a batch of one queue.
func (e *env) processBatch(results []messages.StepResult) []actor.Result[commands.StepProcessResult] {
	e.t.Helper()
	var out []actor.Result[commands.StepProcessResult]
	err := e.inTx(func(tx pgx.Tx) error {
		var err error
		out, err = e.eng.ProcessStepResults(context.Background(), tx, results)
		return err
	})
	if err != nil {
		e.t.Fatalf("process %d results: %v", len(results), err)
	}
	return out
}

// dispatchesOf returns the read dispatches by task and step name.
func byTaskAndStep(ds []dispatch) map[uuid.UUID]map[string]dispatch {
	out := map[uuid.UUID]map[string]dispatch{}
	for _, d := range ds {
		if out[d.body.TaskUUID] == nil {
			out[d.body.TaskUUID] = map[string]dispatch{}
		}
		out[d.body.TaskUUID][d.body.StepName] = d
	}
	return out
}

func TestJoinWhoseParentsCompleteInOneBatchIsDispatchedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("diamond", `{"n": 3}`)
	e.mustProcess(compute(t, e.readOne("start").body))
	ds := byTaskAndStep(e.readDispatches())[res.TaskUUID]
	out := e.processBatch([]messages.StepResult{compute(t, ds["left"].body), compute(t, ds["right"].body)})
	for i, r := range out {
		if r.Err != nil || !r.Value.Accepted || r.Value.Final == nil || r.Value.Final.State != workflow.TaskStepsInProcess {
			t.Fatalf("result %d: %+v %v", i, r.Value, r.Err)
		}
	}
	if enq := out[0].Value.Enqueued + out[1].Value.Enqueued; enq != 1 {
		t.Fatalf("enqueued %d + %d, want the join once", out[0].Value.Enqueued, out[1].Value.Enqueued)
	}
	join := e.readOne("join")
	e.checkDispatch(join.body)
	if n := e.count("SELECT count(*) FROM tasker.workflow_step_dispatches WHERE step_uuid = $1", join.body.StepUUID); n != 1 {
		t.Fatalf("join dispatched %d times", n)
	}
	if fin := e.mustProcess(compute(t, join.body)); fin.Final == nil || fin.Final.State != workflow.TaskComplete {
		t.Fatalf("join result: %+v", fin)
	}
	if got := e.steps(res.TaskUUID)["join"].result; !jsonEqual(t, got, "162") { // 9² + 9²
		t.Fatalf("join result = %s", got)
	}
}

func TestRedeliveredResultsDoNotCountAnAttemptTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("retry", `{"n": 3}`)
	e.mustProcess(compute(t, e.readOne("prepare").body))
	flaky := e.readOne("flaky").body
	fail := compute(t, flaky) // attempt 1 fails, retryable
	// The same failure twice in one batch (a redelivery claimed together with the original)
	// and once more in a later batch: one retry, one attempt counted.
	out := e.processBatch([]messages.StepResult{fail, fail})
	if !out[0].Value.Accepted || out[0].Value.Action != workflow.ActionRetryScheduled || out[0].Value.Enqueued != 1 {
		t.Fatalf("first copy: %+v", out[0].Value)
	}
	if out[1].Err != nil || out[1].Value.Accepted || out[1].Value.Action != workflow.ActionIgnored || out[1].Value.Final != nil {
		t.Fatalf("second copy: %+v %v", out[1].Value, out[1].Err)
	}
	if again := e.processBatch([]messages.StepResult{fail}); again[0].Value.Accepted {
		t.Fatalf("later copy accepted: %+v", again[0].Value)
	}
	st := e.steps(res.TaskUUID)["flaky"]
	if st.attempts != 2 || st.state != workflow.StepWaitingForRetry {
		t.Fatalf("flaky after the copies: %+v", st)
	}
	if n := e.count("SELECT count(*) FROM tasker.workflow_step_dispatches WHERE step_uuid = $1", flaky.StepUUID); n != 2 {
		t.Fatalf("flaky dispatched %d times, want attempts 1 and 2", n)
	}
	if n := e.count("SELECT count(*) FROM tasker.workflow_step_transitions WHERE step_uuid = $1 AND to_state = $2",
		flaky.StepUUID, workflow.StepWaitingForRetry); n != 1 {
		t.Fatalf("%d retry transitions, want 1", n)
	}
}

func TestOneBadResultInABatchFailsAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.mustInitialize("linear", `{"n": 1}`)
	b := e.mustInitialize("linear", `{"n": 2}`)
	ds := byTaskAndStep(e.readDispatches())
	bad := compute(t, ds[a.TaskUUID]["start"].body)
	bad.StepUUID = uuid.New() // a step that does not exist
	out := e.processBatch([]messages.StepResult{
		compute(t, ds[a.TaskUUID]["start"].body), bad, compute(t, ds[b.TaskUUID]["start"].body),
	})
	if !out[0].Value.Accepted || !out[2].Value.Accepted {
		t.Fatalf("valid results: %+v, %+v", out[0], out[2])
	}
	_ = wantPermanent(t, out[1].Err, "unknown_step")
	next := byTaskAndStep(e.readDispatches())
	if len(next[a.TaskUUID]) != 1 || len(next[b.TaskUUID]) != 1 {
		t.Fatalf("next dispatches: %v", next)
	}
}

func TestBatchesCrossingTheSameTasksDoNotDeadlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const tasks = 6
	var ids []uuid.UUID
	for i := range tasks {
		ids = append(ids, e.mustInitialize("diamond", fmt.Sprintf(`{"n": %d}`, i+1)).TaskUUID)
	}
	var starts []messages.StepResult
	for _, d := range e.readDispatches() {
		starts = append(starts, compute(t, d.body))
	}
	e.processBatch(starts)
	ds := byTaskAndStep(e.readDispatches())
	// One batch takes the left results in task order, the other the right results in the
	// opposite order; both lock every task.
	var lefts, rights []messages.StepResult
	for i := range ids {
		lefts = append(lefts, compute(t, ds[ids[i]]["left"].body))
		rights = append(rights, compute(t, ds[ids[len(ids)-1-i]]["right"].body))
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, batch := range [][]messages.StepResult{lefts, rights} {
		wg.Go(func() {
			errs[i] = e.inTx(func(tx pgx.Tx) error {
				_, err := e.eng.ProcessStepResults(context.Background(), tx, batch)
				return err
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	joins := byTaskAndStep(e.readDispatches())
	for _, id := range ids {
		if _, ok := joins[id]["join"]; !ok || len(joins[id]) != 1 {
			t.Fatalf("task %s: dispatches %v, want the join alone", id, joins[id])
		}
	}
	if n := e.count("SELECT count(*) FROM tasker.workflow_step_dispatches d JOIN tasker.workflow_steps s USING (step_uuid) WHERE s.name = 'join'"); n != tasks {
		t.Fatalf("%d join dispatches, want %d", n, tasks)
	}
}

func TestDuplicateRequestsInOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	first := request(t, "linear", `{"n": 5}`, "")
	same := request(t, "linear", `{"n": 5}`, "")
	other := request(t, "linear", `{"n": 6}`, "")
	var out []actor.Result[commands.TaskInitializeResult]
	err := e.inTx(func(tx pgx.Tx) error {
		var err error
		out, err = e.eng.InitializeTasks(context.Background(), tx, []messages.TaskRequest{first, same, other})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !out[0].Value.Created || out[1].Value.Created || out[1].Value.TaskUUID != out[0].Value.TaskUUID || !out[2].Value.Created {
		t.Fatalf("outcomes: %+v", out)
	}
	if n := e.count("SELECT count(*) FROM tasker.workflow_tasks"); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
	if n := len(e.readDispatches()); n != 2 {
		t.Fatalf("%d root dispatches, want 2", n)
	}
}
