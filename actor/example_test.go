package actor_test

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// The actor consumes commands; here a message event asks it to claim message 42 of the task
// request queue and route it to the task handler, and the caller waits for the outcome.
func ExampleNew() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://localhost/app")
	var handlers actor.Handlers // e.g. workflow.NewEngine(...).Handlers()
	cmds := commands.NewCommandChannel(100)
	a, err := actor.New(actor.Config{
		Pool: pool, Commands: cmds, Handlers: handlers,
		VisibilityTimeout: 30 * time.Second, Logger: zap.NewExample(),
	})
	if err != nil {
		panic(err)
	}
	go func() { _ = a.Run(ctx) }()

	outcome, err := commands.Request(ctx, cmds, func(r commands.Responder[commands.MessageOutcome]) commands.Command {
		return commands.ProcessMessageEvent{
			Kind: commands.KindTaskRequest, Queue: messages.QueueTaskRequests, MsgID: 42, ReceivedAt: time.Now(), Reply: r,
		}
	})
	_, _ = outcome, err // outcome.Outcome is processed, skipped, dead_lettered, not_found or failed
}
