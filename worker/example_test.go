package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
	"github.com/tasker-systems/consumer/worker"
)

// A worker for the "demo" namespace: register a handler per callable, then Run until the
// context ends (at SIGINT or SIGTERM in a real program); Run then finishes the running handlers
// (up to ShutdownTimeout) and returns. Here the example plays the consumer: it sends one step
// dispatch and reads the step result back.
func Example() {
	dbURL, drop := testdb.ForExample("example_worker") // a real worker uses its DATABASE_URL
	defer drop()
	ctx, stop := context.WithCancel(context.Background()) // signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	// The consumer creates the queue (and its notify trigger) when it registers a template of
	// the namespace.
	queue := messages.WorkerQueue("demo")
	if err := pgmq.Create(ctx, pool, queue); err != nil {
		log.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, pool, queue); err != nil {
		log.Fatal(err)
	}

	w := &worker.Worker{
		Pool:             pool,
		ListenConnString: dbURL, // a direct connection, not a transaction pooler
		Namespace:        "demo",
		Concurrency:      16,
	}
	w.Handle("demo.square", func(ctx context.Context, step worker.Step) (any, error) {
		var in struct {
			N *float64 `json:"n"`
		}
		if err := step.DecodeContext(&in); err != nil {
			return nil, err // a permanent error: retrying cannot fix the input
		}
		if in.N == nil {
			return nil, worker.Permanent(errors.New("task_context.n is required"))
		}
		return *in.N * *in.N, nil // reported as result.result
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// The consumer's side: send a dispatch, wait for the step result.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{tasker.OrchestrationChannel}.Sanitize()); err != nil {
		log.Fatal(err)
	}
	dispatch, _ := json.Marshal(messages.StepDispatch{
		TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New(),
		Namespace: "demo", TaskName: "linear", TaskVersion: "1.0.0", StepName: "start",
		Handler: messages.HandlerSpec{Callable: "demo.square"}, Attempt: 1, MaxAttempts: 3,
		TaskContext: json.RawMessage(`{"n": 6}`),
	})
	if _, err := pgmq.Send(ctx, pool, queue, dispatch, pgmq.SendOptions{}); err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := conn.WaitForNotification(wait); err != nil {
		log.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, pool, messages.QueueStepResults, 30*time.Second, 1)
	if err != nil || len(msgs) != 1 {
		log.Fatal(msgs, err)
	}
	result, err := messages.DecodeStepResult(msgs[0].Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(result.Result.Status, string(result.Result.Result))

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("processed %d steps, %d failed\n", w.Processed(), w.Failed())
	// Output:
	// completed 36
	// processed 1 steps, 0 failed
}
