package actor

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// hydrated is a message turned into a typed value, ready to route to its handler.
type hydrated struct {
	correlationID uuid.UUID
	taskUUID      uuid.UUID // lock order within a batch; zero for new tasks
	stepUUID      uuid.UUID
	// handle runs the handler in tx and reports whether it changed anything (false: skipped,
	// e.g. a duplicate request or a late result) with a short detail for logs and replies.
	handle func(ctx context.Context, tx pgx.Tx) (changed bool, detail string, err error)
}

// hydrator decodes one kind of message body.
type hydrator func(h Handlers, body json.RawMessage) (hydrated, error)

// hydratorFor routes each kind to its decoder and handler.
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

func hydrateTaskRequest(h Handlers, body json.RawMessage) (hydrated, error) {
	req, err := messages.DecodeTaskRequest(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{
		correlationID: req.TaskRequest.CorrelationID,
		handle: func(ctx context.Context, tx pgx.Tx) (bool, string, error) {
			res, err := h.Task.InitializeTask(ctx, tx, req)
			if err != nil {
				return false, "", err
			}
			if !res.Created {
				return false, "skipped: duplicate of task " + res.TaskUUID.String(), nil
			}
			return true, "task created", nil
		},
	}, nil
}

func hydrateStepResult(h Handlers, body json.RawMessage) (hydrated, error) {
	res, err := messages.DecodeStepResult(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{
		correlationID: res.CorrelationID,
		taskUUID:      res.TaskUUID,
		stepUUID:      res.StepUUID,
		handle: func(ctx context.Context, tx pgx.Tx) (bool, string, error) {
			out, err := h.Step.ProcessStepResult(ctx, tx, res)
			if err != nil {
				return false, "", err
			}
			if !out.Accepted {
				return false, "skipped: result not awaited (late or duplicate)", nil
			}
			return true, out.Action, nil
		},
	}, nil
}

func hydrateFinalization(h Handlers, body json.RawMessage) (hydrated, error) {
	fin, err := messages.DecodeFinalization(body)
	if err != nil {
		return hydrated{}, err
	}
	return hydrated{
		taskUUID: fin.TaskUUID,
		handle: func(ctx context.Context, tx pgx.Tx) (bool, string, error) {
			out, err := h.Finalization.FinalizeTask(ctx, tx, fin.TaskUUID)
			if err != nil {
				return false, "", err
			}
			return true, "task " + out.State, nil
		},
	}, nil
}
