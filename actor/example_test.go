package actor_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// greeter is a task handler that records nothing and says what it was asked; a real consumer
// uses the workflow engine's handlers (workflow.NewEngine(...).Handlers()).
type greeter struct{}

func (greeter) InitializeTasks(_ context.Context, _ pgx.Tx, reqs []messages.TaskRequest) ([]actor.Result[commands.TaskInitializeResult], error) {
	out := make([]actor.Result[commands.TaskInitializeResult], len(reqs))
	for i, req := range reqs {
		fmt.Println("initialize", req.TaskRequest.Namespace+"/"+req.TaskRequest.Name)
		out[i].Value = commands.TaskInitializeResult{TaskUUID: uuid.New(), Created: true}
	}
	return out, nil
}

func (greeter) ProcessStepResults(_ context.Context, _ pgx.Tx, results []messages.StepResult) ([]actor.Result[commands.StepProcessResult], error) {
	return make([]actor.Result[commands.StepProcessResult], len(results)), nil
}

func (greeter) FinalizeTasks(_ context.Context, _ pgx.Tx, tasks []uuid.UUID) ([]actor.Result[commands.TaskFinalizationResult], error) {
	return make([]actor.Result[commands.TaskFinalizationResult], len(tasks)), nil
}

// The actor consumes commands. Here a command asks it to claim a task request by its id (as a
// notification or a poll would announce it), route it to the task handler and acknowledge it in
// the handler's transaction; the caller waits for the outcome. Asked again, the message is gone:
// a normal race outcome, not an error.
func ExampleNew() {
	dbURL, drop := testdb.ForExample("example_actor") // a real consumer uses DATABASE_URL
	defer drop()
	ctx, stop := context.WithCancel(context.Background())
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	cmds := commands.NewCommandChannel(100)
	a, err := actor.New(actor.Config{
		Pool: pool, Commands: cmds, Handlers: actor.Handlers{Task: greeter{}, Step: greeter{}, Finalization: greeter{}},
		VisibilityTimeout: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	body := []byte(`{"task_request":{"namespace":"demo","name":"linear","version":"1.0.0","context":{"n":6}}}`)
	id, err := pgmq.Send(ctx, pool, messages.QueueTaskRequests, body, pgmq.SendOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		out, err := commands.Request(ctx, cmds, func(r commands.Responder[commands.MessageOutcome]) commands.Command {
			return commands.ProcessMessage{Kind: commands.KindTaskRequest, Queue: messages.QueueTaskRequests, MsgID: id, ReceivedAt: time.Now(), Reply: r}
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(out.Outcome, out.Detail)
	}
	stop()
	if err := <-done; err != nil { // Run returns once in-flight work has drained
		log.Fatal(err)
	}
	// Output:
	// initialize demo/linear
	// processed task created
	// not_found not claimable: already claimed, deleted or not yet visible
}
