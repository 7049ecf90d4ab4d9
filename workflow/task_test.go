package workflow_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

const uniqueTemplate = `
namespace: demo
name: unique
version: 1.0.0
identity_strategy: always_unique
steps:
  - name: only
    handler: {callable: demo.square}
`

const callerTemplate = `
namespace: demo
name: caller
version: 1.0.0
identity_strategy: caller_provided
steps:
  - name: only
    handler: {callable: demo.square}
`

func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []*template.Template{mustParse(t, uniqueTemplate), mustParse(t, callerTemplate)})
	tasks := func() int { return e.count("SELECT count(*) FROM tasker.workflow_tasks") }

	t.Run("same key twice", func(t *testing.T) {
		first, err := e.initialize(request(t, "linear", `{"n": 1}`, "order-1"))
		if err != nil || !first.Created {
			t.Fatalf("first: %+v %v", first, err)
		}
		before := e.snapshot()
		// A different context does not matter: the key is the identity.
		second, err := e.initialize(request(t, "linear", `{"n": 2}`, "order-1"))
		if err != nil {
			t.Fatal(err)
		}
		if second.Created || second.TaskUUID != first.TaskUUID || second.CorrelationID != first.CorrelationID || second.StepsEnqueued != 0 {
			t.Fatalf("second: %+v, first %+v", second, first)
		}
		if after := e.snapshot(); after != before {
			t.Fatalf("a duplicate changed the database:\nbefore %s\nafter  %s", before, after)
		}
		// The key is per template.
		other, err := e.initialize(request(t, "diamond", `{"n": 1}`, "order-1"))
		if err != nil || !other.Created {
			t.Fatalf("same key, other template: %+v %v", other, err)
		}
	})

	t.Run("strict dedups canonical context", func(t *testing.T) {
		n := tasks()
		a, err := e.initialize(request(t, "tree", `{"n": 6, "opts": {"a": 1, "b": [1, 2]}}`, ""))
		if err != nil || !a.Created {
			t.Fatalf("%+v %v", a, err)
		}
		b, err := e.initialize(request(t, "tree", `{ "opts" : {"b": [1,2], "a": 1}, "n" : 6 }`, ""))
		if err != nil || b.Created || b.TaskUUID != a.TaskUUID {
			t.Fatalf("reordered keys: %+v %v", b, err)
		}
		c, err := e.initialize(request(t, "tree", `{"n": 7, "opts": {"a": 1, "b": [1, 2]}}`, ""))
		if err != nil || !c.Created {
			t.Fatalf("other context: %+v %v", c, err)
		}
		d, err := e.initialize(request(t, "tree", `{"n": 6, "opts": {"a": 1, "b": [2, 1]}}`, ""))
		if err != nil || !d.Created {
			t.Fatalf("array order matters: %+v %v", d, err)
		}
		if got := tasks() - n; got != 3 {
			t.Fatalf("%d tasks created, want 3", got)
		}
	})

	t.Run("always_unique", func(t *testing.T) {
		a, err := e.initialize(request(t, "unique", `{"n": 1}`, ""))
		if err != nil || !a.Created {
			t.Fatalf("%+v %v", a, err)
		}
		b, err := e.initialize(request(t, "unique", `{"n": 1}`, ""))
		if err != nil || !b.Created || b.TaskUUID == a.TaskUUID {
			t.Fatalf("%+v %v", b, err)
		}
		// An idempotency key still deduplicates.
		c, err := e.initialize(request(t, "unique", `{"n": 1}`, "k"))
		if err != nil || !c.Created {
			t.Fatalf("%+v %v", c, err)
		}
		d, err := e.initialize(request(t, "unique", `{"n": 1}`, "k"))
		if err != nil || d.Created || d.TaskUUID != c.TaskUUID {
			t.Fatalf("%+v %v", d, err)
		}
	})

	t.Run("caller_provided", func(t *testing.T) {
		n := tasks()
		_, err := e.initialize(request(t, "caller", `{"n": 1}`, ""))
		_ = wantPermanent(t, err, messages.ReasonValidation)
		var ve *messages.ValidationError
		if !errors.As(err, &ve) || ve.Field != "task_request.idempotency_key" {
			t.Fatalf("error %v does not name task_request.idempotency_key", err)
		}
		if tasks() != n {
			t.Fatal("a task was created")
		}
		a, err := e.initialize(request(t, "caller", `{"n": 1}`, "key-1"))
		if err != nil || !a.Created {
			t.Fatalf("%+v %v", a, err)
		}
		b, err := e.initialize(request(t, "caller", `{"n": 1}`, "key-2"))
		if err != nil || !b.Created {
			t.Fatalf("%+v %v", b, err)
		}
	})

	t.Run("concurrent duplicates", func(t *testing.T) {
		const n = 6
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]commands.TaskInitializeResult, n)
			errs    = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := request(t, "mixed", `{"n": 5}`, "race")
				<-start
				results[i], errs[i] = e.initialize(req)
			}()
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if results[i].Created {
				created++
			}
			if results[i].TaskUUID != results[0].TaskUUID {
				t.Fatalf("different tasks: %v and %v", results[i].TaskUUID, results[0].TaskUUID)
			}
		}
		if created != 1 {
			t.Fatalf("%d tasks created, want 1", created)
		}
		if c := e.count("SELECT count(*) FROM tasker.workflow_tasks WHERE idempotency_key = 'race'"); c != 1 {
			t.Fatalf("%d tasks with the key", c)
		}
	})
}

func TestUnknownTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	before := e.snapshot()
	_, err := e.initialize(request(t, "nope", `{"n": 1}`, ""))
	p := wantPermanent(t, err, "unknown_template")
	if !strings.Contains(p.Error(), "demo/nope@1.0.0") {
		t.Errorf("error does not name the template: %v", p)
	}
	req := request(t, "linear", `{"n": 1}`, "")
	req.TaskRequest.Version = "2.0.0"
	_, err = e.initialize(req)
	_ = wantPermanent(t, err, "unknown_template")
	if after := e.snapshot(); after != before {
		t.Errorf("database changed:\nbefore %s\nafter  %s", before, after)
	}
}

func TestInitializeRolledBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	before := e.snapshot()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := one(e.eng.InitializeTasks(ctx, tx, []messages.TaskRequest{request(t, "tree", `{"n": 6}`, "rollback")}))
	if err != nil || !res.Created || res.StepsEnqueued != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM pgmq.q_worker_demo_queue").Scan(&n); err != nil || n != 1 {
		t.Fatalf("inside the transaction: %d dispatches, %v", n, err)
	}
	// The actor fails after the handler's writes (say, the ack): everything goes.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("rolled back initialize left traces:\nbefore %s\nafter  %s", before, after)
	}
	if _, _, err := workflow.GetTaskStatus(ctx, e.pool, res.TaskUUID); !errors.Is(err, workflow.ErrTaskNotFound) {
		t.Fatalf("status of the rolled back task: %v", err)
	}
	// The same request works afterwards (the identity was not kept).
	again, err := e.initialize(request(t, "tree", `{"n": 6}`, "rollback"))
	if err != nil || !again.Created {
		t.Fatalf("%+v %v", again, err)
	}
}

func TestInvalidContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	req := request(t, "linear", `{"n": 1}`, "")
	req.TaskRequest.Context = []byte(`[1, 2]`)
	_, err := e.initialize(req)
	_ = wantPermanent(t, err, messages.ReasonValidation)
}

func TestFinalizeTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("diamond", `{"n": 3}`)
	e.mustProcess(compute(t, e.readOne("start").body))
	e.readDispatches() // left and right are in flight

	before := e.snapshot()
	fin, err := e.finalize(res.TaskUUID)
	if err != nil || fin.Changed || fin.Enqueued != 0 || fin.State != workflow.TaskStepsInProcess || fin.TaskUUID != res.TaskUUID {
		t.Fatalf("finalize a running task: %+v %v", fin, err)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("finalize of a running task changed the database:\nbefore %s\nafter  %s", before, after)
	}

	// An operator resets left to pending: finalize would dispatch attempt 1 again, which the
	// dispatch log refuses, rolling everything back.
	var left uuid.UUID
	if err := e.pool.QueryRow(context.Background(), `
		UPDATE tasker.workflow_steps SET state = 'pending', attempts = 0
		WHERE task_uuid = $1 AND name = 'left' RETURNING step_uuid`, res.TaskUUID).Scan(&left); err != nil {
		t.Fatal(err)
	}
	before = e.snapshot()
	if _, err := e.finalize(res.TaskUUID); err == nil || !strings.Contains(err.Error(), "dispatched twice") {
		t.Fatalf("re-dispatch of attempt 1: %v", err)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused dispatch left traces:\nbefore %s\nafter  %s", before, after)
	}

	// Without the log row, finalize dispatches the ready step.
	if _, err := e.pool.Exec(context.Background(), "DELETE FROM tasker.workflow_step_dispatches WHERE step_uuid = $1", left); err != nil {
		t.Fatal(err)
	}
	fin, err = e.finalize(res.TaskUUID)
	if err != nil || fin.Enqueued != 1 || fin.State != workflow.TaskStepsInProcess {
		t.Fatalf("finalize with a ready step: %+v %v", fin, err)
	}
	d := e.readOne("left")
	e.checkDispatch(d.body)
}

func TestFinalizeWaitingForRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.mustInitialize("retry", `{"n": 3}`)
	e.mustProcess(compute(t, e.readOne("prepare").body))
	e.mustProcess(compute(t, e.readOne("flaky").body)) // attempt 1 fails
	fin, err := e.finalize(res.TaskUUID)
	if err != nil || fin.Changed || fin.State != workflow.TaskWaitingForRetry {
		t.Fatalf("%+v %v", fin, err)
	}
}

// TestDeletingATaskDeletesItsRows: the workflow tables have no foreign keys, so deleting a task
// must still remove its steps, edges, history and dispatch log, and nothing of another task.
func TestDeletingATaskDeletesItsRows(t *testing.T) {
	e := newEnv(t, nil)
	gone := e.mustInitialize("diamond", `{"n": 1}`)
	e.run(gone.TaskUUID)
	kept := e.mustInitialize("diamond", `{"n": 2}`)
	e.run(kept.TaskUUID)
	rows := func(id uuid.UUID) map[string]int {
		return map[string]int{
			"tasks":            e.count("SELECT count(*)::int FROM tasker.workflow_tasks WHERE task_uuid = $1", id),
			"steps":            e.count("SELECT count(*)::int FROM tasker.workflow_steps WHERE task_uuid = $1", id),
			"edges":            e.count("SELECT count(*)::int FROM tasker.workflow_step_edges e JOIN tasker.workflow_steps s ON s.step_uuid = e.child_uuid WHERE s.task_uuid = $1", id),
			"task transitions": e.count("SELECT count(*)::int FROM tasker.workflow_task_transitions WHERE task_uuid = $1", id),
			"step transitions": e.count("SELECT count(*)::int FROM tasker.workflow_step_transitions WHERE task_uuid = $1", id),
			"dispatches":       e.count("SELECT count(*)::int FROM tasker.workflow_step_dispatches WHERE task_uuid = $1", id),
		}
	}
	before := rows(kept.TaskUUID)
	for what, n := range rows(gone.TaskUUID) {
		if n == 0 {
			t.Fatalf("before the delete the task has no %s", what)
		}
	}
	if _, err := e.pool.Exec(context.Background(), "DELETE FROM tasker.workflow_tasks WHERE task_uuid = $1", gone.TaskUUID); err != nil {
		t.Fatal(err)
	}
	for what, n := range rows(gone.TaskUUID) {
		if n != 0 {
			t.Errorf("after the delete: %d %s of the deleted task left", n, what)
		}
	}
	if after := rows(kept.TaskUUID); !maps.Equal(after, before) {
		t.Errorf("the other task's rows changed: %v, were %v", after, before)
	}
	if n := e.count("SELECT count(*)::int FROM tasker.workflow_step_edges WHERE parent_uuid NOT IN (SELECT step_uuid FROM tasker.workflow_steps)"); n != 0 {
		t.Errorf("%d edges from deleted steps left", n)
	}
}
