package actor

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// Result is a handler's outcome for one message of a batch: its value, or the error that
// failed that message alone. A message that failed must have left no change in the
// transaction; its *commands.PermanentError (for example an unknown template) dead-letters it,
// any other error leaves it for redelivery after its visibility timeout.
type Result[T any] struct {
	Value T
	Err   error
}

// The handlers get every message of one batch at once, in one call, inside tx, which also
// acknowledges the messages: they must not commit or roll back tx. They return one Result per
// input, in input order. An error returned instead of the results fails the whole call: the
// actor rolls tx back to before the call and calls the handler again on parts of the batch
// (halves, under savepoints) until the message at fault is alone, so one bad message never
// costs the others their outcome. A handler may therefore see a message more than once in one
// delivery, always with the earlier call's effects rolled back.

// TaskHandler creates tasks from requests.
type TaskHandler interface {
	InitializeTasks(ctx context.Context, tx pgx.Tx, reqs []messages.TaskRequest) ([]Result[commands.TaskInitializeResult], error)
}

// StepHandler records workers' step results.
type StepHandler interface {
	ProcessStepResults(ctx context.Context, tx pgx.Tx, results []messages.StepResult) ([]Result[commands.StepProcessResult], error)
}

// FinalizationHandler (re-)evaluates tasks for completion.
type FinalizationHandler interface {
	FinalizeTasks(ctx context.Context, tx pgx.Tx, taskUUIDs []uuid.UUID) ([]Result[commands.TaskFinalizationResult], error)
}

// Handlers are the three handlers the actor routes to.
type Handlers struct {
	Task         TaskHandler
	Step         StepHandler
	Finalization FinalizationHandler
}
