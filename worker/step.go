package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/tasker-systems/consumer/messages"
)

// Handler runs one step. The returned value is the step's result: it is encoded with
// encoding/json (a json.RawMessage passes through unchanged; nil becomes null). A non-nil error
// fails the step; see Retryable, RetryableAfter and Permanent for how it is reported.
//
// ctx is not cancelled when Run's context is: on shutdown a running handler gets
// Worker.ShutdownTimeout to finish before ctx is cancelled. A handler that returns an error
// after that cancellation reports nothing; its dispatch is released for another worker.
//
// Step execution is at-least-once: if a worker dies (or a handler outlives its visibility
// timeout without heartbeats), the same attempt runs again elsewhere. Make side effects
// idempotent, for example keyed by Step.Dispatch.StepUUID and Step.Attempt.
type Handler func(ctx context.Context, step Step) (any, error)

// Step is one claimed step dispatch (see docs/protocol.md) with convenient accessors.
type Step struct {
	// Dispatch is the message body as received.
	Dispatch messages.StepDispatch

	// TaskContext is the task's input (task_request.context), shared by every step.
	TaskContext json.RawMessage
	// DependencyResults maps each direct parent step's name to its result.
	DependencyResults map[string]json.RawMessage
	// Initialization is the handler's initialization from the template (may be nil).
	Initialization json.RawMessage
	// Attempt is this execution's attempt number (1 for the first); MaxAttempts is the most
	// the orchestrator will make.
	Attempt, MaxAttempts int

	// MsgID is the dispatch's message id in the worker queue.
	MsgID int64
	// ReadCount is how many times the dispatch message has been delivered, this time included:
	// above 1, an earlier delivery of the same attempt may have run (at least partly).
	ReadCount int
}

func newStep(d messages.StepDispatch, msgID int64, readCount int32) Step {
	return Step{
		Dispatch:          d,
		TaskContext:       d.TaskContext,
		DependencyResults: d.DependencyResults,
		Initialization:    d.Handler.Initialization,
		Attempt:           d.Attempt,
		MaxAttempts:       d.MaxAttempts,
		MsgID:             msgID,
		ReadCount:         int(readCount),
	}
}

// Callable returns the handler name the dispatch asks for (handler.callable).
func (s Step) Callable() string { return s.Dispatch.Handler.Callable }

// Name returns the step's name in its template.
func (s Step) Name() string { return s.Dispatch.StepName }

// DecodeContext decodes the task context into v. An absent or null context leaves v unchanged.
// The error is Permanent (bad input does not improve with retries), so a handler can return it
// as is.
func (s Step) DecodeContext(v any) error {
	return decodeInput("task_context", s.TaskContext, v)
}

// DecodeInitialization decodes the handler's initialization into v. An absent or null
// initialization leaves v unchanged. The error is Permanent.
func (s Step) DecodeInitialization(v any) error {
	return decodeInput("handler.initialization", s.Initialization, v)
}

// DependencyResult decodes the result of the direct parent step name into v. A parent that is
// not in dependency_results is an error. The error is Permanent.
func (s Step) DependencyResult(name string, v any) error {
	raw, ok := s.DependencyResults[name]
	if !ok {
		return invalidInput(fmt.Errorf("dependency_results: no result for step %q", name))
	}
	return decodeInput(fmt.Sprintf("dependency_results[%q]", name), raw, v)
}

// DependencyNames returns the names in dependency_results, sorted.
func (s Step) DependencyNames() []string {
	return slices.Sorted(maps.Keys(s.DependencyResults))
}

func decodeInput(field string, raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return invalidInput(fmt.Errorf("decode %s: %w", field, err))
	}
	return nil
}

func invalidInput(err error) error {
	return Permanent(WithErrorType(err, ErrorTypeInvalidInput))
}
