package outcome_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/goleak"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/outcome"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// submit sends a task request for demo/name@1.0.0 and returns it as an outcome.Request.
func submit(t *testing.T, db *testdb.DB, name, taskContext string) outcome.Request {
	t.Helper()
	req, err := messages.NewTaskRequest(messages.TaskRequestSpec{
		Namespace: "demo", Name: name, Version: "1.0.0", Context: json.RawMessage(taskContext),
	}, "outcome-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pgmq.Send(context.Background(), db.Pool, messages.QueueTaskRequests, body, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return outcome.Request{RequestID: req.RequestID, MsgID: id}
}

// runConsumer runs the real consumer pipeline (no worker) on db until the test ends.
func runConsumer(t *testing.T, db *testdb.DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(map[string]string{
		"DATABASE_URL": db.URL, "CONSUMER_HTTP_ADDR": "", "CONSUMER_CONCURRENCY": "2", "CONSUMER_DB_MAX_CONNS": "6",
	}))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(cfg, db.Pool, workflow.NewEngine(workflow.EngineOptions{}).Handlers(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the consumer did not stop")
		}
	})
}

func TestEveryOutcomeOfARequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 10)
	linear, err := template.LoadFile("../../testdata/templates/linear.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := workflow.Register(ctx, db.Pool, []*template.Template{linear}, nil); err != nil {
		t.Fatal(err)
	}
	since, err := dlq.Watermark(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	// The same context twice: under the default strict identity strategy one of them is a
	// duplicate of the other. And a request for a template that does not exist.
	first, second := submit(t, db, "linear", `{"n":6}`), submit(t, db, "linear", `{"n":6}`)
	unknown := submit(t, db, "missing", `{"n":6}`)
	reqs := []outcome.Request{first, second, unknown}

	outs, err := outcome.Lookup(ctx, db.Pool, since, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if o.Kind != outcome.Pending || o.Settled() {
			t.Errorf("request %d before the consumer runs: kind %d (settled %v), want pending", i, o.Kind, o.Settled())
		}
	}

	runConsumer(t, db)
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, r := range reqs {
		if _, err := outcome.Wait(waitCtx, db.Pool, since, r, func(o outcome.Outcome) bool { return o.Kind != outcome.Pending }); err != nil {
			t.Fatal(err)
		}
	}
	outs, err = outcome.Lookup(ctx, db.Pool, since, reqs)
	if err != nil {
		t.Fatal(err)
	}
	created, duplicate := outs[0], outs[1]
	if created.Kind == outcome.Duplicate {
		created, duplicate = duplicate, created
	}
	if created.Kind != outcome.Created || created.Task.TaskUUID == uuid.Nil || created.Task.Name != "linear" ||
		created.Task.StepsTotal != 4 || created.Task.CreatedAt.IsZero() || created.Settled() {
		t.Errorf("the first of two equal requests: %+v, want a created, unfinished linear task", created)
	}
	if duplicate.Kind != outcome.Duplicate || !duplicate.Settled() || duplicate.Task.TaskUUID != uuid.Nil {
		t.Errorf("the second of two equal requests: %+v, want a duplicate", duplicate)
	}
	if d := outs[2]; d.Kind != outcome.DeadLettered || !d.Settled() || d.DeadLetter.Reason != "unknown_template" ||
		d.DeadLetter.SourceMsgID != unknown.MsgID || d.DeadLetter.SourceQueue != messages.QueueTaskRequests {
		t.Errorf("a request for an unknown template: %+v, want its dead letter", d)
	}
}

func TestSettled(t *testing.T) {
	for _, c := range []struct {
		o    outcome.Outcome
		want bool
	}{
		{outcome.Outcome{Kind: outcome.Pending}, false},
		{outcome.Outcome{Kind: outcome.Created, Task: workflow.TaskStatus{State: workflow.TaskStepsInProcess}}, false},
		{outcome.Outcome{Kind: outcome.Created, Task: workflow.TaskStatus{State: workflow.TaskComplete}}, true},
		{outcome.Outcome{Kind: outcome.Created, Task: workflow.TaskStatus{State: workflow.TaskError}}, true},
		{outcome.Outcome{Kind: outcome.Duplicate}, true},
		{outcome.Outcome{Kind: outcome.DeadLettered}, true},
	} {
		if got := c.o.Settled(); got != c.want {
			t.Errorf("kind %d %q: Settled = %v, want %v", c.o.Kind, c.o.Task.State, got, c.want)
		}
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	r := submit(t, db, "linear", `{}`) // no consumer runs: it stays pending
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	looks := 0
	o, err := outcome.Wait(ctx, db.Pool, 0, r, func(o outcome.Outcome) bool { looks++; return o.Settled() })
	if !errors.Is(err, context.DeadlineExceeded) || o.Kind != outcome.Pending {
		t.Fatalf("Wait = kind %d, %v; want pending and the deadline", o.Kind, err)
	}
	// With backoff from 10ms the 200ms allow a handful of looks, not one every millisecond.
	if looks > 12 {
		t.Errorf("Wait looked %d times in 200ms", looks)
	}
	if none, err := outcome.Lookup(context.Background(), db.Pool, 0, nil); err != nil || len(none) != 0 {
		t.Errorf("Lookup of nothing = %v, %v", none, err)
	}
}
