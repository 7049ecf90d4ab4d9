package worker_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/worker"
)

// A worker for the "demo" namespace: register a handler per callable, then Run until SIGINT or
// SIGTERM. Run then finishes the running handlers (up to ShutdownTimeout) and returns.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	w := &worker.Worker{
		Pool:             pool,
		ListenConnString: os.Getenv("DATABASE_URL"),
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
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
	log.Printf("processed %d steps, %d failed", w.Processed(), w.Failed())
}
