package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/pgmq"
)

// ErrTaskNotFound is returned (wrapped) by the read helpers when there is no such task.
var ErrTaskNotFound = errors.New("task not found")

// TaskStatus is a row of the view tasker.task_status.
type TaskStatus struct {
	TaskUUID      uuid.UUID
	CorrelationID uuid.UUID
	Namespace     string
	Name          string
	Version       string
	State         string
	StepsTotal    int
	StepsComplete int
	StepsError    int
	CreatedAt     time.Time
	CompletedAt   *time.Time // nil until the task is complete or error
}

// Finished reports whether the task is complete, error or cancelled.
func (s TaskStatus) Finished() bool { return TaskFinished(s.State) }

// StepStatus is a row of the view tasker.step_status.
type StepStatus struct {
	TaskUUID    uuid.UUID
	StepUUID    uuid.UUID
	Name        string
	State       string
	Attempts    int
	MaxAttempts int
	Result      json.RawMessage // the accepted result of a completed step, else nil
	LastError   json.RawMessage // the error object of the latest failure, else nil
	UpdatedAt   time.Time
}

const taskStatusColumns = `task_uuid, correlation_id, namespace, name, version, state,
	steps_total, steps_complete, steps_error, created_at, completed_at`

func scanTaskStatus(row pgx.CollectableRow) (TaskStatus, error) {
	var s TaskStatus
	err := row.Scan(&s.TaskUUID, &s.CorrelationID, &s.Namespace, &s.Name, &s.Version, &s.State,
		&s.StepsTotal, &s.StepsComplete, &s.StepsError, &s.CreatedAt, &s.CompletedAt)
	return s, err
}

// GetTaskStatus reads a task and its steps (in template declaration order) from the public
// views. A missing task is an error wrapping ErrTaskNotFound.
func GetTaskStatus(ctx context.Context, db pgmq.DB, taskUUID uuid.UUID) (TaskStatus, []StepStatus, error) {
	rows, err := db.Query(ctx, "SELECT "+taskStatusColumns+" FROM tasker.task_status WHERE task_uuid = $1", taskUUID)
	if err != nil {
		return TaskStatus{}, nil, fmt.Errorf("task status %s: %w", taskUUID, err)
	}
	task, err := pgx.CollectExactlyOneRow(rows, scanTaskStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return TaskStatus{}, nil, fmt.Errorf("task status %s: %w", taskUUID, ErrTaskNotFound)
	}
	if err != nil {
		return TaskStatus{}, nil, fmt.Errorf("task status %s: %w", taskUUID, err)
	}
	rows, err = db.Query(ctx, `
		SELECT v.task_uuid, v.step_uuid, v.name, v.state, v.attempts, v.max_attempts, v.result, v.last_error, v.updated_at
		FROM tasker.step_status v
		JOIN tasker.workflow_steps s ON s.step_uuid = v.step_uuid
		WHERE v.task_uuid = $1
		ORDER BY s.position`, taskUUID)
	if err != nil {
		return task, nil, fmt.Errorf("step status of task %s: %w", taskUUID, err)
	}
	steps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StepStatus, error) {
		var s StepStatus
		var result, lastErr []byte
		err := row.Scan(&s.TaskUUID, &s.StepUUID, &s.Name, &s.State, &s.Attempts, &s.MaxAttempts, &result, &lastErr, &s.UpdatedAt)
		s.Result, s.LastError = result, lastErr
		return s, err
	})
	if err != nil {
		return task, nil, fmt.Errorf("step status of task %s: %w", taskUUID, err)
	}
	return task, steps, nil
}

// FindTaskByRequestID returns the task created from the task request with this request_id.
// A request that was a duplicate created no task, so it is not found (ErrTaskNotFound).
func FindTaskByRequestID(ctx context.Context, db pgmq.DB, requestID string) (TaskStatus, error) {
	rows, err := db.Query(ctx, `
		SELECT `+taskStatusColumns+` FROM tasker.task_status
		WHERE task_uuid = (SELECT task_uuid FROM tasker.workflow_tasks WHERE request_id = $1
		                   ORDER BY created_at, task_uuid LIMIT 1)`, requestID)
	if err != nil {
		return TaskStatus{}, fmt.Errorf("find task of request %q: %w", requestID, err)
	}
	task, err := pgx.CollectExactlyOneRow(rows, scanTaskStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return TaskStatus{}, fmt.Errorf("find task of request %q: %w", requestID, ErrTaskNotFound)
	}
	if err != nil {
		return TaskStatus{}, fmt.Errorf("find task of request %q: %w", requestID, err)
	}
	return task, nil
}

// FindTasksByCorrelationID returns the tasks with this correlation id, oldest first.
func FindTasksByCorrelationID(ctx context.Context, db pgmq.DB, correlationID uuid.UUID) ([]TaskStatus, error) {
	rows, err := db.Query(ctx, "SELECT "+taskStatusColumns+` FROM tasker.task_status
		WHERE correlation_id = $1 ORDER BY created_at, task_uuid`, correlationID)
	if err != nil {
		return nil, fmt.Errorf("find tasks of correlation id %s: %w", correlationID, err)
	}
	tasks, err := pgx.CollectRows(rows, scanTaskStatus)
	if err != nil {
		return nil, fmt.Errorf("find tasks of correlation id %s: %w", correlationID, err)
	}
	return tasks, nil
}
