package service_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/migrate"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/tasker"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// The consumer in a few lines: configuration, schema, templates, the workflow engine as the
// actor's handlers, and the pipeline until its context ends (in a real program, at SIGTERM;
// in-flight work then drains). A task request then becomes a task whose first step is
// dispatched to the namespace's worker queue, where a worker would pick it up.
func Example() {
	dbURL, drop := testdb.ForExample("example_service")
	defer drop()
	ctx, stop := context.WithCancel(context.Background()) // signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()

	// The environment of a real deployment, here as a map.
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(map[string]string{
		"DATABASE_URL":           dbURL,
		"CONSUMER_TEMPLATE_PATH": "../testdata/templates",
	}))
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, zap.NewNop()); err != nil {
		log.Fatal(err)
	}
	templates, err := template.LoadDir(cfg.TemplatePath)
	if err != nil {
		log.Fatal(err)
	}
	if err := workflow.Register(ctx, pool, templates, zap.NewNop()); err != nil {
		log.Fatal(err)
	}
	engine := workflow.NewEngine(workflow.EngineOptions{})
	svc, err := service.New(cfg, pool, engine.Handlers(), zap.NewNop(), nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	// Watch the worker queue as a worker would, then submit a request.
	workerQueue := messages.WorkerQueue("demo")
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{tasker.NotifyChannel(workerQueue)}.Sanitize()); err != nil {
		log.Fatal(err)
	}
	request := `{"task_request":{"namespace":"demo","name":"linear","version":"1.0.0","context":{"n":6}}}`
	if _, err := pgmq.Send(ctx, pool, messages.QueueTaskRequests, []byte(request), pgmq.SendOptions{}); err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := conn.WaitForNotification(wait); err != nil {
		log.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, pool, workerQueue, 30*time.Second, 1)
	if err != nil || len(msgs) != 1 {
		log.Fatal(msgs, err)
	}
	d, err := messages.DecodeStepDispatch(msgs[0].Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s/%s %s: step %s (%s), attempt %d, context %s\n",
		d.Namespace, d.TaskName, d.TaskVersion, d.StepName, d.Handler.Callable, d.Attempt, d.TaskContext)

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: demo/linear 1.0.0: step start (demo.square), attempt 1, context {"n": 6}
}
