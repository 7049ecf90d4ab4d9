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
	// Attempts counts task handler runs, one per request.
	Attempts atomic.Int64
	// Calls counts task handler calls, one per batch or part of a batch.
	Calls atomic.Int64
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

// InitializeTasks implements actor.TaskHandler. Injected failures ({"fail"}, {"fail_until"},
// {"permanent"}) fail their own request and leave no effect; a panic or data the database
// refuses fails the whole call, as a broken set-based statement would.
func (r *Recorder) InitializeTasks(ctx context.Context, tx pgx.Tx, reqs []messages.TaskRequest) ([]actor.Result[commands.TaskInitializeResult], error) {
	r.Calls.Add(1)
	out := make([]actor.Result[commands.TaskInitializeResult], len(reqs))
	for i, req := range reqs {
		res, err := r.initialize(ctx, tx, req)
		if err != nil && !r.ownFailure(err) {
			return nil, err
		}
		out[i] = actor.Result[commands.TaskInitializeResult]{Value: res, Err: err}
	}
	return out, nil
}

// errInjected marks the failures that are the request's own.
var errInjected = errors.New("injected failure")

func (r *Recorder) ownFailure(err error) bool {
	_, permanent := commands.AsPermanent(err)
	return permanent || errors.Is(err, errInjected)
}

func (r *Recorder) initialize(ctx context.Context, tx pgx.Tx, req messages.TaskRequest) (commands.TaskInitializeResult, error) {
	r.Attempts.Add(1)
	var s steer
	_ = json.Unmarshal(req.TaskRequest.Context, &s)
	key := req.RequestID
	var deliveries int
	if s.FailUntil > 0 {
		// The delivery count as seen inside this transaction (the claim already counted).
		if err := tx.QueryRow(ctx, "SELECT read_ct FROM pgmq.q_orchestration_task_requests WHERE message->>'request_id' = $1", key).Scan(&deliveries); err != nil {
			return commands.TaskInitializeResult{}, err
		}
	}
	switch {
	case s.Panic:
		panic("handler exploded")
	case s.Permanent:
		return commands.TaskInitializeResult{}, commands.Permanent("unknown_template", errors.New("no such template"))
	case s.Fail, deliveries > 0 && deliveries < s.FailUntil:
		return commands.TaskInitializeResult{}, fmt.Errorf("%w for %s", errInjected, key)
	}
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
	if s.BadData { // the database refuses the data: SQLSTATE 22P02
		if _, err := tx.Exec(ctx, "SELECT 'not a number'::int"); err != nil {
			return commands.TaskInitializeResult{}, fmt.Errorf("store %s: %w", key, err)
		}
	}
	return commands.TaskInitializeResult{TaskUUID: uuid.New(), Created: true}, nil
}

// ProcessStepResults implements actor.StepHandler.
func (r *Recorder) ProcessStepResults(ctx context.Context, tx pgx.Tx, results []messages.StepResult) ([]actor.Result[commands.StepProcessResult], error) {
	out := make([]actor.Result[commands.StepProcessResult], len(results))
	for i, res := range results {
		if _, err := tx.Exec(ctx, "INSERT INTO test_effects (kind, key) VALUES ('step', $1)", res.StepUUID.String()); err != nil {
			return nil, err
		}
		out[i].Value = commands.StepProcessResult{Accepted: true, Action: "completed"}
	}
	return out, nil
}

// FinalizeTasks implements actor.FinalizationHandler.
func (r *Recorder) FinalizeTasks(ctx context.Context, tx pgx.Tx, tasks []uuid.UUID) ([]actor.Result[commands.TaskFinalizationResult], error) {
	out := make([]actor.Result[commands.TaskFinalizationResult], len(tasks))
	for i, task := range tasks {
		if _, err := tx.Exec(ctx, "INSERT INTO test_effects (kind, key) VALUES ('final', $1)", task.String()); err != nil {
			return nil, err
		}
		out[i].Value = commands.TaskFinalizationResult{TaskUUID: task, State: "complete"}
	}
	return out, nil
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
