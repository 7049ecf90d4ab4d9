package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// exampleDB connects to a fresh migrated database and registers testdata/templates; a real
// consumer connects to DATABASE_URL and loads CONSUMER_TEMPLATE_PATH.
func exampleDB(prefix string) (*pgxpool.Pool, func()) {
	dbURL, drop := testdb.ForExample(prefix)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		log.Fatal(err)
	}
	return pool, func() { pool.Close(); drop() }
}

// At start-up: load and validate the template directory, then register it, which also creates
// each namespace's worker queue. Registering the same templates again changes nothing, so
// every process registers at every start.
func ExampleRegister() {
	pool, done := exampleDB("example_register")
	defer done()
	ctx := context.Background()

	templates, err := template.LoadDir("../testdata/templates")
	if err != nil {
		log.Fatal(err) // names every bad file and step
	}
	for range 2 {
		if err := workflow.Register(ctx, pool, templates, zap.NewNop()); err != nil {
			log.Fatal(err) // names each template changed under a registered version
		}
	}
	rows, err := pool.Query(ctx, "SELECT namespace || '/' || name || '@' || version FROM tasker.workflow_templates ORDER BY 1")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)
	if _, err := pgmq.QueueMetrics(ctx, pool, messages.WorkerQueue("demo")); err == nil {
		fmt.Println(messages.WorkerQueue("demo"), "exists")
	}
	// Output:
	// [demo/diamond@1.0.0 demo/linear@1.0.0 demo/mixed@1.0.0 demo/retry@1.0.0 demo/tree@1.0.0]
	// worker_demo_queue exists
}

// The engine is the actor's three handlers. Each works inside the transaction the actor gives
// it, which also deletes the messages being handled, so the effects and the acks commit
// together. Here a task request creates its task and dispatches the first step.
func ExampleNewEngine() {
	pool, done := exampleDB("example_engine")
	defer done()
	ctx := context.Background()
	templates, err := template.LoadDir("../testdata/templates")
	if err != nil {
		log.Fatal(err)
	}
	if err := workflow.Register(ctx, pool, templates, nil); err != nil {
		log.Fatal(err)
	}

	handlers := workflow.NewEngine(workflow.EngineOptions{Logger: zap.NewNop()}).Handlers()
	req, err := messages.NewTaskRequest(messages.TaskRequestSpec{
		Namespace: "demo", Name: "linear", Version: "1.0.0", Context: json.RawMessage(`{"n": 6}`),
	}, "example", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		results, err := handlers.Task.InitializeTasks(ctx, tx, []messages.TaskRequest{req})
		if err != nil {
			return err // the batch failed as a whole: roll back, the messages come back
		}
		if err := results[0].Err; err != nil {
			return err // a *commands.PermanentError: the actor dead-letters the message
		}
		fmt.Println("created:", results[0].Value.Created, "steps enqueued:", results[0].Value.StepsEnqueued)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	msgs, err := pgmq.Read(ctx, pool, messages.WorkerQueue("demo"), time.Minute, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		d, err := messages.DecodeStepDispatch(m.Body)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("dispatched %s (%s), attempt %d of %d\n", d.StepName, d.Handler.Callable, d.Attempt, d.MaxAttempts)
	}
	// Output:
	// created: true steps enqueued: 1
	// dispatched start (demo.square), attempt 1 of 3
}
