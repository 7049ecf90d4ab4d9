package actor

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// TaskHandler creates a task from a request. It runs inside tx, which also acknowledges the
// request message: it must not commit or roll back tx. On any error the handler's effects are
// rolled back (to a savepoint; the other messages of the batch are unaffected). A
// *commands.PermanentError (for example an unknown template) then dead-letters the message; any
// other error leaves it for redelivery after its visibility timeout.
type TaskHandler interface {
	InitializeTask(ctx context.Context, tx pgx.Tx, req messages.TaskRequest) (commands.TaskInitializeResult, error)
}

// StepHandler records a worker's step result, under the same rules as TaskHandler.
type StepHandler interface {
	ProcessStepResult(ctx context.Context, tx pgx.Tx, res messages.StepResult) (commands.StepProcessResult, error)
}

// FinalizationHandler (re-)evaluates a task for completion, under the same rules as TaskHandler.
type FinalizationHandler interface {
	FinalizeTask(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID) (commands.TaskFinalizationResult, error)
}

// Handlers are the three handlers the actor routes to.
type Handlers struct {
	Task         TaskHandler
	Step         StepHandler
	Finalization FinalizationHandler
}
