package workflow

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
)

// FinalizeTask re-evaluates a task inside tx (SPEC §5.4): it dispatches the pending steps whose
// parents are all complete, then sets the task's state (see the package documentation). A
// complete, error or cancelled task stays as it is (Changed false). An unknown task is a
// *commands.PermanentError with reason "unknown_task". FinalizeTask is idempotent.
func (e *Engine) FinalizeTask(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID) (commands.TaskFinalizationResult, error) {
	out := commands.TaskFinalizationResult{TaskUUID: taskUUID}
	now := e.now()
	var (
		task  lockedTask
		found bool
		sq    settleQuery
	)
	// One round trip: the lock, then (in later statements, so they see the current rows) the
	// ready dispatch, which does nothing for a finished or missing task, and the counts.
	b := &pgx.Batch{}
	queueLockTask(b, taskUUID, &task, &found)
	sq.queue(b, taskUUID, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return out, fmt.Errorf("finalize task %s: %w", taskUUID, err)
	}
	if !found {
		return out, commands.Permanent("unknown_task", fmt.Errorf("finalize task %s: no such task", taskUUID))
	}
	if TaskFinished(task.state) {
		out.State = task.state
		return out, nil
	}
	fin, err := e.settle(ctx, tx, &task, &sq, nil, now)
	if err != nil {
		return out, fmt.Errorf("finalize task %s: %w", taskUUID, err)
	}
	out.State, out.Changed, out.Enqueued = fin.state, fin.changed, fin.readySent
	return out, nil
}
