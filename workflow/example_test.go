package workflow_test

import (
	"context"
	"os"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// At start-up: load and validate the template directory, register it (which also creates the
// worker queues), then hand the engine to the actor as its three handlers.
func ExampleRegister() {
	ctx := context.Background()
	log := zap.NewExample()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal("connect", zap.Error(err))
	}
	defer pool.Close()

	templates, err := template.LoadDir(os.Getenv("CONSUMER_TEMPLATE_PATH"))
	if err != nil {
		log.Fatal("templates", zap.Error(err)) // names every bad file and step
	}
	if err := workflow.Register(ctx, pool, templates, log); err != nil {
		log.Fatal("register templates", zap.Error(err))
	}
}

// The engine works inside the transaction the actor gives it; that transaction also deletes
// the message being handled, so the effects and the ack commit together.
func ExampleNewEngine() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	engine := workflow.NewEngine(workflow.EngineOptions{Logger: zap.NewNop()})
	handlers := engine.Handlers() // actor.Handlers{Task, Step, Finalization}

	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	results, err := handlers.Finalization.FinalizeTasks(ctx, tx, []uuid.UUID{{}})
	if err != nil {
		return // the batch failed as a whole: roll back
	}
	if results[0].Err != nil {
		return // an unknown task is a *commands.PermanentError: dead-letter its message
	}
	_ = tx.Commit(ctx)
}
