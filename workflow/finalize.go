package workflow

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
)

// FinalizeTasks re-evaluates tasks inside tx (see docs/protocol.md): it dispatches the pending
// steps whose parents are all complete, then sets each task's state (see the package
// documentation). A complete, error or cancelled task stays as it is (Changed false). An
// unknown task is a *commands.PermanentError with reason "unknown_task" for its request alone.
// A task named twice is evaluated once; the repeat reports its state with Changed false.
// FinalizeTasks is idempotent. It costs two round trips whatever the number of tasks.
func (e *Engine) FinalizeTasks(ctx context.Context, tx pgx.Tx, taskUUIDs []uuid.UUID) ([]actor.Result[commands.TaskFinalizationResult], error) {
	now := e.now()
	ids := distinct(taskUUIDs)
	tasks := make(map[uuid.UUID]*lockedTask, len(ids))
	sq := settleQuery{byTask: make(map[uuid.UUID]*settling, len(ids))}
	for _, id := range ids {
		sq.byTask[id] = &settling{}
	}
	// The lock, then (in later statements, so they see the current rows) the ready dispatch,
	// which does nothing for a finished or missing task, and the counts.
	b := newBatch()
	queueLockTasks(b, ids, tasks)
	e.queueSettle(b, &sq, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("finalize %d task(s): %w", len(ids), err)
	}
	var running []*settling
	for _, id := range ids {
		st := sq.byTask[id]
		st.task = tasks[id]
		if st.task != nil && !TaskFinished(st.task.state) {
			running = append(running, st)
		}
	}
	if err := e.settle(ctx, tx, running, now); err != nil {
		return nil, fmt.Errorf("finalize %d task(s): %w", len(ids), err)
	}
	out := make([]actor.Result[commands.TaskFinalizationResult], len(taskUUIDs))
	reported := make(map[uuid.UUID]bool, len(ids))
	for i, id := range taskUUIDs {
		st := sq.byTask[id]
		if st.task == nil {
			out[i].Err = commands.Permanent("unknown_task", fmt.Errorf("finalize task %s: no such task", id))
			continue
		}
		r := commands.TaskFinalizationResult{TaskUUID: id, State: st.task.state}
		if !reported[id] {
			r.Changed, r.Enqueued = st.changed, st.readySent
		}
		reported[id] = true
		out[i].Value = r
	}
	return out, nil
}
