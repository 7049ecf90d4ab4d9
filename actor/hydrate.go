package actor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// hydrated is a message turned into a typed value, ready to route to its handler.
type hydrated struct {
	correlationID uuid.UUID
	taskUUID      uuid.UUID // zero for new tasks
	stepUUID      uuid.UUID
	request       messages.TaskRequest // task requests
	result        messages.StepResult  // step results
}

// hydrator decodes one kind of message body.
type hydrator func(body json.RawMessage) (hydrated, error)

// hydratorFor routes each kind to its decoder.
func hydratorFor(kind commands.Kind) (hydrator, bool) {
	switch kind {
	case commands.KindTaskRequest:
		return hydrateTaskRequest, true
	case commands.KindStepResult:
		return hydrateStepResult, true
	case commands.KindFinalization:
		return hydrateFinalization, true
	default:
		return nil, false
	}
}

func hydrateTaskRequest(body json.RawMessage) (hydrated, error) {
	req, err := messages.DecodeTaskRequest(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{correlationID: req.TaskRequest.CorrelationID, request: req}, nil
}

func hydrateStepResult(body json.RawMessage) (hydrated, error) {
	res, err := messages.DecodeStepResult(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{correlationID: res.CorrelationID, taskUUID: res.TaskUUID, stepUUID: res.StepUUID, result: res}, nil
}

func hydrateFinalization(body json.RawMessage) (hydrated, error) {
	fin, err := messages.DecodeFinalization(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{taskUUID: fin.TaskUUID}, nil
}

// handled is one message's outcome from its handler: whether it changed anything (false:
// skipped, e.g. a duplicate request or a late result) with a short detail for logs and
// replies, or the error that failed it.
type handled struct {
	changed bool
	detail  string
	err     error
}

// handleBatch calls the handler of kind once for all of hs, in tx. An error means the call
// failed as a whole.
func handleBatch(ctx context.Context, tx pgx.Tx, h Handlers, kind commands.Kind, hs []*hydrated) ([]handled, error) {
	switch kind {
	case commands.KindTaskRequest:
		return callBatch(ctx, tx, hs, func(x *hydrated) messages.TaskRequest { return x.request },
			h.Task.InitializeTasks, describeTask)
	case commands.KindStepResult:
		return callBatch(ctx, tx, hs, func(x *hydrated) messages.StepResult { return x.result },
			h.Step.ProcessStepResults, describeStep)
	case commands.KindFinalization:
		return callBatch(ctx, tx, hs, func(x *hydrated) uuid.UUID { return x.taskUUID },
			h.Finalization.FinalizeTasks, describeFinalization)
	default:
		return nil, fmt.Errorf("no handler for %s", kind)
	}
}

func callBatch[In, Out any](ctx context.Context, tx pgx.Tx, hs []*hydrated, in func(*hydrated) In,
	call func(context.Context, pgx.Tx, []In) ([]Result[Out], error), describe func(Out) (bool, string)) ([]handled, error) {
	args := make([]In, len(hs))
	for i, x := range hs {
		args[i] = in(x)
	}
	results, err := call(ctx, tx, args)
	if err != nil {
		return nil, err
	}
	if len(results) != len(hs) {
		return nil, fmt.Errorf("handler returned %d results for %d messages", len(results), len(hs))
	}
	out := make([]handled, len(results))
	for i, r := range results {
		if r.Err != nil {
			out[i].err = r.Err
			continue
		}
		out[i].changed, out[i].detail = describe(r.Value)
	}
	return out, nil
}

func describeTask(res commands.TaskInitializeResult) (bool, string) {
	if !res.Created {
		return false, "skipped: duplicate of task " + res.TaskUUID.String()
	}
	return true, "task created"
}

func describeStep(out commands.StepProcessResult) (bool, string) {
	if !out.Accepted {
		return false, "skipped: result not awaited (late or duplicate)"
	}
	return true, out.Action
}

func describeFinalization(out commands.TaskFinalizationResult) (bool, string) {
	return true, "task " + out.State
}
