package commands

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// TaskInitializeResult is the outcome of a task request.
type TaskInitializeResult struct {
	TaskUUID      uuid.UUID
	CorrelationID uuid.UUID
	Created       bool // false: a duplicate of TaskUUID (idempotency), nothing was created
	StepsEnqueued int
}

// StepProcessResult is the outcome of a step result.
type StepProcessResult struct {
	TaskUUID uuid.UUID
	StepUUID uuid.UUID
	Accepted bool   // false: late or duplicate result, acknowledged and ignored
	Action   string // what happened: completed, retry_scheduled, failed, ignored
	Enqueued int    // steps dispatched as a consequence
	Final    *TaskFinalizationResult
}

// TaskFinalizationResult is the outcome of finalizing a task.
type TaskFinalizationResult struct {
	TaskUUID uuid.UUID
	State    string // the task's state afterwards
	Changed  bool   // the task changed state
	Enqueued int    // steps dispatched while re-evaluating
}

// Outcome is what became of one queue message.
type Outcome int

const (
	// OutcomeProcessed: the handler succeeded; its effects and the ack committed together.
	OutcomeProcessed Outcome = iota + 1
	// OutcomeSkipped: acknowledged without effect (a duplicate request, a late result).
	OutcomeSkipped
	// OutcomeDeadLettered: moved to orchestration_dlq.
	OutcomeDeadLettered
	// OutcomeNotFound: the message could not be claimed (already claimed, deleted or not yet
	// visible): a normal race outcome.
	OutcomeNotFound
	// OutcomeFailed: the handler failed; effects rolled back, the message comes back after its
	// visibility timeout.
	OutcomeFailed
)

func (o Outcome) String() string {
	switch o {
	case OutcomeProcessed:
		return "processed"
	case OutcomeSkipped:
		return "skipped"
	case OutcomeDeadLettered:
		return "dead_lettered"
	case OutcomeNotFound:
		return "not_found"
	case OutcomeFailed:
		return "failed"
	default:
		return "unknown"
	}
}

// MessageOutcome is the reply to ProcessMessage.
type MessageOutcome struct {
	Ref     MsgRef
	Outcome Outcome
	Detail  string // e.g. "skipped: duplicate", the dead-letter reason
	Err     error  // the handler's error for OutcomeFailed and OutcomeDeadLettered
}

// Reply is what a Responder delivers: a value or an error.
type Reply[T any] struct {
	Value T
	Err   error
}

// PermanentError marks a handler error that retrying cannot fix (an unknown template, a result
// for an unknown step): the message goes to the dead-letter queue at once.
type PermanentError struct {
	Reason string // dead-letter reason, e.g. "unknown_template"
	Err    error
}

func (e *PermanentError) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with the given reason.
func Permanent(reason string, err error) error { return &PermanentError{Reason: reason, Err: err} }

// AsPermanent returns the PermanentError in err's chain, if any.
func AsPermanent(err error) (*PermanentError, bool) {
	var p *PermanentError
	ok := errors.As(err, &p)
	return p, ok
}
