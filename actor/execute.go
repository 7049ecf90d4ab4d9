package actor

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

var errShuttingDown = errors.New("consumer shutting down")

// execute is the one place an outcome is accounted for: it
// records the statistic and sends the reply when someone waits, logging at ERROR when the
// requester has gone away.
func execute[T any](a *Actor, kind commands.Kind, outcome commands.Outcome, resp commands.Responder[T], v T, err error) {
	a.stats.Record(kind, outcome)
	a.reply(kind, kind.String(), func() bool { return resp.Send(v, err) })
}

// runDirect runs a direct command (a value, not a queue message) in its own transaction.
func (a *Actor) runDirect(cmd commands.Command) {
	switch c := cmd.(type) {
	case commands.InitializeTask:
		direct(a, commands.KindTaskRequest, c.Reply, func(ctx context.Context, tx pgx.Tx) (commands.TaskInitializeResult, bool, error) {
			r, err := one(a.cfg.Handlers.Task.InitializeTasks(ctx, tx, []messages.TaskRequest{c.Request}))
			return r, r.Created, err
		})
	case commands.ProcessStepResult:
		direct(a, commands.KindStepResult, c.Reply, func(ctx context.Context, tx pgx.Tx) (commands.StepProcessResult, bool, error) {
			r, err := one(a.cfg.Handlers.Step.ProcessStepResults(ctx, tx, []messages.StepResult{c.Result}))
			return r, r.Accepted, err
		})
	case commands.FinalizeTask:
		direct(a, commands.KindFinalization, c.Reply, func(ctx context.Context, tx pgx.Tx) (commands.TaskFinalizationResult, bool, error) {
			r, err := one(a.cfg.Handlers.Finalization.FinalizeTasks(ctx, tx, []uuid.UUID{c.TaskUUID}))
			return r, true, err
		})
	}
}

// one unwraps the result of a batch of one.
func one[T any](results []Result[T], err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if len(results) != 1 {
		return zero, fmt.Errorf("handler returned %d results for 1 command", len(results))
	}
	return results[0].Value, results[0].Err
}

// runDirectAbandoned answers a direct command that shutdown prevented from running.
func (a *Actor) runDirectAbandoned(cmd commands.Command) {
	switch c := cmd.(type) {
	case commands.InitializeTask:
		execute(a, commands.KindTaskRequest, commands.OutcomeFailed, c.Reply, commands.TaskInitializeResult{}, errShuttingDown)
	case commands.ProcessStepResult:
		execute(a, commands.KindStepResult, commands.OutcomeFailed, c.Reply, commands.StepProcessResult{}, errShuttingDown)
	case commands.FinalizeTask:
		execute(a, commands.KindFinalization, commands.OutcomeFailed, c.Reply, commands.TaskFinalizationResult{}, errShuttingDown)
	}
}

// direct runs fn in a transaction that commits when fn succeeds; changed=false counts as skipped.
func direct[T any](a *Actor, kind commands.Kind, resp commands.Responder[T], fn func(context.Context, pgx.Tx) (T, bool, error)) {
	var v T
	changed, err := false, error(nil)
	txErr := pgx.BeginFunc(a.workCtx, a.cfg.Pool, func(tx pgx.Tx) error {
		v, changed, err = fn(a.workCtx, tx)
		return err
	})
	outcome := commands.OutcomeProcessed
	switch {
	case txErr != nil:
		outcome, err = commands.OutcomeFailed, fmt.Errorf("%s: %w", kind, txErr)
	case !changed:
		outcome = commands.OutcomeSkipped
	}
	execute(a, kind, outcome, resp, v, err)
}
