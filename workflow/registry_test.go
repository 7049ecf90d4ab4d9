package workflow_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

func loadTemplates(t *testing.T) []*template.Template {
	t.Helper()
	tmpls, err := template.LoadDir("../testdata/templates")
	if err != nil {
		t.Fatal(err)
	}
	return tmpls
}

func TestRegister(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 8)
	tmpls := loadTemplates(t)

	// Concurrent first registration from several "processes".
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = workflow.Register(ctx, db.Pool, loadTemplates(t), nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent register: %v", err)
		}
	}
	// Again: a no-op.
	if err := workflow.Register(ctx, db.Pool, tmpls, nil); err != nil {
		t.Fatalf("register again: %v", err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM tasker.workflow_templates").Scan(&n); err != nil || n != len(tmpls) {
		t.Fatalf("%d registered templates, want %d (%v)", n, len(tmpls), err)
	}

	// The worker queue exists, with the notify trigger.
	qs, err := pgmq.ListQueues(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range qs {
		found = found || q.Name == "worker_demo_queue"
	}
	if !found {
		t.Fatalf("worker_demo_queue not created: %+v", qs)
	}
	var triggers int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger
		WHERE tgrelid = 'pgmq.q_worker_demo_queue'::regclass AND tgname = 'tasker_notify_insert'`).Scan(&triggers); err != nil || triggers != 1 {
		t.Fatalf("notify trigger: %d, %v", triggers, err)
	}

	// A changed template under a registered version is refused, and nothing of that call is
	// registered.
	changed := mustParse(t, `
namespace: demo
name: linear
version: 1.0.0
steps:
  - name: start
    handler: {callable: demo.cube}
`)
	changed.Source = "new/linear.yaml"
	fresh := mustParse(t, `
namespace: other
name: fresh
version: 1.0.0
steps:
  - name: only
    handler: {callable: other.x}
`)
	err = workflow.Register(ctx, db.Pool, []*template.Template{fresh, changed}, nil)
	if err == nil {
		t.Fatal("changed template accepted")
	}
	for _, want := range []string{"demo/linear@1.0.0", "new/linear.yaml", "../testdata/templates/linear.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM tasker.workflow_templates WHERE namespace = 'other'").Scan(&n); err != nil || n != 0 {
		t.Errorf("a template of the refused call was registered: %d, %v", n, err)
	}
	// Same content, other file: the same template.
	same := mustParse(t, `
namespace: demo
name: diamond
version: 1.0.0
steps:
  - {name: start, handler: {callable: demo.square}}
  - {name: left, handler: {callable: demo.square}, dependencies: [start]}
  - {name: right, handler: {callable: demo.square}, dependencies: [start]}
  - name: join
    handler: {callable: demo.sum}
    dependencies: [right, left]
    retry: {retryable: false, max_attempts: 1, backoff_base: 1s}
`)
	if err := workflow.Register(ctx, db.Pool, []*template.Template{same}, nil); err != nil {
		t.Errorf("same template from another file: %v", err)
	}
}

func TestRegisterRejectsInvalidTemplate(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 2)
	bad := &template.Template{Namespace: "demo", Name: "bad", Version: "1", Source: "code"}
	if err := workflow.Register(context.Background(), db.Pool, []*template.Template{bad}, nil); err == nil {
		t.Fatal("a template without steps was registered")
	}
}

// TestWorkerQueueNotifies checks that a dispatch is announced to workers that LISTEN.
func TestWorkerQueueNotifies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN "pgmq_message_ready.demo"`); err != nil {
		t.Fatal(err)
	}
	e.mustInitialize("diamond", `{"n": 1}`)
	n, err := conn.Conn().WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.Payload, `"queue_name" : "worker_demo_queue"`) && !strings.Contains(n.Payload, `"queue_name":"worker_demo_queue"`) {
		t.Fatalf("payload %s", n.Payload)
	}
	if _, err := conn.Exec(ctx, "UNLISTEN *"); err != nil {
		t.Fatal(err)
	}
}

func TestViewColumns(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 2)
	want := map[string]string{
		"task_status": "task_uuid uuid, correlation_id uuid, namespace text, name text, version text, state text, " +
			"steps_total integer, steps_complete integer, steps_error integer, " +
			"created_at timestamp with time zone, completed_at timestamp with time zone",
		"step_status": "task_uuid uuid, step_uuid uuid, name text, state text, attempts integer, max_attempts integer, " +
			"result jsonb, last_error jsonb, updated_at timestamp with time zone",
	}
	for view, cols := range want {
		var got string
		err := db.Pool.QueryRow(context.Background(), `
			SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
			FROM information_schema.columns WHERE table_schema = 'tasker' AND table_name = $1`, view).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got != cols {
			t.Errorf("tasker.%s columns:\n got %s\nwant %s", view, got, cols)
		}
	}
}

func TestGetTaskStatusNotFound(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 2)
	_, _, err := workflow.GetTaskStatus(context.Background(), db.Pool, [16]byte{1})
	if !errors.Is(err, workflow.ErrTaskNotFound) {
		t.Fatalf("%v", err)
	}
	_, err = workflow.FindTaskByRequestID(context.Background(), db.Pool, "nope")
	if !errors.Is(err, workflow.ErrTaskNotFound) {
		t.Fatalf("%v", err)
	}
}

func TestFindTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	req := request(t, "linear", `{"n": 1}`, "")
	res, err := e.initialize(req)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := workflow.FindTaskByRequestID(context.Background(), e.pool, req.RequestID)
	if err != nil || ts.TaskUUID != res.TaskUUID || ts.State != workflow.TaskStepsInProcess || ts.StepsTotal != 4 {
		t.Fatalf("%+v %v", ts, err)
	}
	all, err := workflow.FindTasksByCorrelationID(context.Background(), e.pool, res.CorrelationID)
	if err != nil || len(all) != 1 || all[0].TaskUUID != res.TaskUUID {
		t.Fatalf("%+v %v", all, err)
	}
	_, steps, err := workflow.GetTaskStatus(context.Background(), e.pool, res.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range steps {
		order = append(order, s.Name+":"+s.State)
	}
	if got := strings.Join(order, " "); got != "start:enqueued double:pending add_ten:pending finish:pending" {
		t.Fatalf("steps %s", got)
	}
}

// A consumer that starts while a worker holds a transaction open on its queue must not wait for
// it (and make every later send and read of that queue wait behind its DDL): a queue that is set
// up already is left alone.
func TestRegisterTakesNoLockOnAQueueThatIsSetUp(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t, 4)
	tmpls := loadTemplates(t)
	if err := workflow.Register(ctx, db.Pool, tmpls, nil); err != nil {
		t.Fatal(err)
	}
	open, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.Rollback(ctx) }()
	// A lock as a worker's or producer's open transaction holds it.
	if _, err := open.Exec(ctx, "LOCK TABLE pgmq.q_worker_demo_queue IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	again, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := workflow.Register(again, db.Pool, tmpls, nil); err != nil {
		t.Fatalf("registering again behind an open transaction on the worker queue: %v", err)
	}
	var triggers int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgmq.q_worker_demo_queue'::regclass AND tgname = 'tasker_notify_insert'`).Scan(&triggers); err != nil || triggers != 1 {
		t.Fatalf("notify triggers = %d (%v), want 1", triggers, err)
	}
}
