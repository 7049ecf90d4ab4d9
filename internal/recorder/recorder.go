// Package recorder provides handlers for pipeline tests: each handled message writes one row to
// the table test_effects inside the transaction it is given, so a test can check that effects
// and acknowledgements commit (or roll back) together.
//
// A task request's context steers its handler: {"fail": true} always fails,
// {"fail_until": N} fails while the message's delivery count is below N, {"permanent": true}
// fails permanently, {"panic": true} panics, {"block": true} waits on Gate, {"bad_data": true}
// makes the database refuse a value (SQLSTATE 22P02).
package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// Recorder implements the three handler interfaces.
type Recorder struct {
	pool *pgxpool.Pool
	// Gate releases handlers of {"block": true} requests when closed.
	Gate chan struct{}
	// Entered receives the request id of each blocking handler as it starts.
	Entered chan string
	// Attempts counts task handler runs.
	Attempts atomic.Int64
}

// New creates test_effects in the database of pool and returns a Recorder.
func New(t testing.TB, pool *pgxpool.Pool) *Recorder {
	t.Helper()
	_, err := pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS test_effects (
		id bigserial PRIMARY KEY, kind text NOT NULL, key text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	if err != nil {
		t.Fatal(err)
	}
	return &Recorder{pool: pool, Gate: make(chan struct{}), Entered: make(chan string, 100)}
}

// Handlers returns the recorder as the actor's three handlers.
func (r *Recorder) Handlers() actor.Handlers {
	return actor.Handlers{Task: r, Step: r, Finalization: r}
}

type steer struct {
	Fail      bool `json:"fail"`
	FailUntil int  `json:"fail_until"`
	Permanent bool `json:"permanent"`
	Panic     bool `json:"panic"`
	Block     bool `json:"block"`
	BadData   bool `json:"bad_data"`
}

// InitializeTask implements actor.TaskHandler.
func (r *Recorder) InitializeTask(ctx context.Context, tx pgx.Tx, req messages.TaskRequest) (commands.TaskInitializeResult, error) {
	r.Attempts.Add(1)
	var s steer
	_ = json.Unmarshal(req.TaskRequest.Context, &s)
	key := req.RequestID
	if _, err := tx.Exec(ctx, "INSERT INTO test_effects (kind, key) VALUES ('task', $1)", key); err != nil {
		return commands.TaskInitializeResult{}, err
	}
	if s.Block {
		r.Entered <- key
		select {
		case <-r.Gate:
		case <-ctx.Done():
			return commands.TaskInitializeResult{}, ctx.Err()
		}
	}
	var deliveries int
	if s.FailUntil > 0 {
		// The delivery count as seen inside this transaction (the claim already counted).
		if err := tx.QueryRow(ctx, "SELECT read_ct FROM pgmq.q_orchestration_task_requests WHERE message->>'request_id' = $1", key).Scan(&deliveries); err != nil {
			return commands.TaskInitializeResult{}, err
		}
	}
	if s.BadData { // the database refuses the data: SQLSTATE 22P02
		if _, err := tx.Exec(ctx, "SELECT 'not a number'::int"); err != nil {
			return commands.TaskInitializeResult{}, fmt.Errorf("store %s: %w", key, err)
		}
	}
	switch {
	case s.Panic:
		panic("handler exploded")
	case s.Permanent:
		return commands.TaskInitializeResult{}, commands.Permanent("unknown_template", errors.New("no such template"))
	case s.Fail, deliveries > 0 && deliveries < s.FailUntil:
		return commands.TaskInitializeResult{}, fmt.Errorf("injected failure for %s", key)
	}
	return commands.TaskInitializeResult{TaskUUID: uuid.New(), Created: true}, nil
}

// ProcessStepResult implements actor.StepHandler.
func (r *Recorder) ProcessStepResult(ctx context.Context, tx pgx.Tx, res messages.StepResult) (commands.StepProcessResult, error) {
	_, err := tx.Exec(ctx, "INSERT INTO test_effects (kind, key) VALUES ('step', $1)", res.StepUUID.String())
	return commands.StepProcessResult{Accepted: true, Action: "completed"}, err
}

// FinalizeTask implements actor.FinalizationHandler.
func (r *Recorder) FinalizeTask(ctx context.Context, tx pgx.Tx, task uuid.UUID) (commands.TaskFinalizationResult, error) {
	_, err := tx.Exec(ctx, "INSERT INTO test_effects (kind, key) VALUES ('final', $1)", task.String())
	return commands.TaskFinalizationResult{TaskUUID: task, State: "complete"}, err
}

// Effects counts committed effects of one kind ("task", "step", "final") and key.
func (r *Recorder) Effects(t testing.TB, kind, key string) int {
	t.Helper()
	var n int
	if err := r.pool.QueryRow(context.Background(), "SELECT count(*) FROM test_effects WHERE kind = $1 AND key = $2", kind, key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TaskRequest returns a valid task request body with the given request id and context.
func TaskRequest(requestID, contextJSON string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"request_id":%q,"task_request":{"namespace":"demo","name":"linear","version":"1.0.0","context":%s}}`, requestID, contextJSON))
}
