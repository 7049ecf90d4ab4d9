package workflow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
)

// InitializeTask creates a task and its steps from a task request and dispatches the root
// steps (SPEC §5.1, §5.2), inside tx.
//
// An unknown template is a *commands.PermanentError with reason "unknown_template"; a
// caller_provided template without an idempotency key, or a context that is not a JSON object,
// is one with reason "validation_failed". A request whose identity matches an existing task
// (see the package documentation) creates nothing and returns that task with Created false.
func (e *Engine) InitializeTask(ctx context.Context, tx pgx.Tx, req messages.TaskRequest) (commands.TaskInitializeResult, error) {
	spec := req.TaskRequest
	now := e.now()
	reg, err := e.lookupTemplate(ctx, tx, spec.Namespace, spec.Name, spec.Version)
	if err != nil {
		return commands.TaskInitializeResult{}, err
	}
	t := reg.t
	if !isJSONObject(spec.Context) {
		return commands.TaskInitializeResult{}, commands.Permanent(messages.ReasonValidation,
			&messages.ValidationError{Field: "task_request.context", Reason: "must be a JSON object"})
	}
	identity, err := taskIdentity(t, spec)
	if err != nil {
		return commands.TaskInitializeResult{}, err
	}
	correlationID := spec.CorrelationID
	if correlationID == uuid.Nil {
		if correlationID, err = uuid.NewV7(); err != nil {
			return commands.TaskInitializeResult{}, fmt.Errorf("new correlation id: %w", err)
		}
	}
	taskUUID, err := uuid.NewV7()
	if err != nil {
		return commands.TaskInitializeResult{}, fmt.Errorf("new task uuid: %w", err)
	}
	tags := spec.Tags
	if tags == nil {
		tags = []string{}
	}

	var inserted int
	err = tx.QueryRow(ctx, insertTaskSQL,
		taskUUID, correlationID, reg.id, t.Namespace, t.Name, t.Version, []byte(spec.Context),
		identity, nullIfEmpty(spec.IdempotencyKey), nullIfEmpty(req.RequestID), nullIfEmpty(spec.Initiator),
		nullIfEmpty(spec.SourceSystem), nullIfEmpty(spec.Reason), tags, spec.Priority, now,
	).Scan(&inserted)
	if err != nil {
		return commands.TaskInitializeResult{}, fmt.Errorf("initialize task %s (%s): insert task: %w", taskUUID, t.Key(), err)
	}
	if inserted == 0 {
		return e.duplicate(ctx, tx, reg, identity, req)
	}

	task := &lockedTask{
		uuid: taskUUID, correlationID: correlationID, namespace: t.Namespace, name: t.Name,
		version: t.Version, state: TaskPending, context: spec.Context,
	}
	b := &pgx.Batch{}
	if err := queueInsertSteps(b, taskUUID, t, now); err != nil {
		return commands.TaskInitializeResult{}, fmt.Errorf("initialize task %s (%s): %w", taskUUID, t.Key(), err)
	}
	var sq settleQuery
	sq.queue(b, taskUUID, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return commands.TaskInitializeResult{}, fmt.Errorf("initialize task %s (%s): insert steps: %w", taskUUID, t.Key(), err)
	}
	out, err := e.settle(ctx, tx, task, &sq, nil, now)
	if err != nil {
		return commands.TaskInitializeResult{}, fmt.Errorf("initialize task %s (%s): %w", taskUUID, t.Key(), err)
	}
	return commands.TaskInitializeResult{
		TaskUUID: taskUUID, CorrelationID: correlationID, Created: true, StepsEnqueued: out.readySent,
	}, nil
}

// insertTaskSQL inserts the task unless its identity exists, with its creation history row;
// it returns how many tasks it inserted (0 or 1).
const insertTaskSQL = `
	WITH ins AS (
	  INSERT INTO tasker.workflow_tasks (task_uuid, correlation_id, template_id, namespace, name, version, state,
	    context, identity_hash, idempotency_key, request_id, initiator, source_system, reason, tags, priority,
	    created_at, updated_at)
	  VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)
	  ON CONFLICT (template_id, identity_hash) DO NOTHING
	  RETURNING task_uuid
	), history AS (
	  INSERT INTO tasker.workflow_task_transitions (task_uuid, from_state, to_state, reason, created_at)
	  SELECT task_uuid, NULL, 'pending', 'created', $16 FROM ins
	)
	SELECT count(*)::int FROM ins`

// duplicate returns the existing task of an identity. It runs in a statement of its own: after
// ON CONFLICT DO NOTHING waited for a concurrent insert of the same identity to commit, only a
// new statement sees that row.
func (e *Engine) duplicate(ctx context.Context, tx pgx.Tx, reg registeredTemplate, identity *string, req messages.TaskRequest) (commands.TaskInitializeResult, error) {
	var res commands.TaskInitializeResult
	err := tx.QueryRow(ctx, `
		SELECT task_uuid, correlation_id FROM tasker.workflow_tasks
		WHERE template_id = $1 AND identity_hash = $2`, reg.id, identity).Scan(&res.TaskUUID, &res.CorrelationID)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			err = errors.New("the conflicting task is not visible (not READ COMMITTED?)")
		}
		return res, fmt.Errorf("initialize task (%s): find duplicate: %w", reg.t.Key(), err)
	}
	e.log.Debug("duplicate task request", zap.String("template", reg.t.Key()),
		zap.Stringer("task_uuid", res.TaskUUID), zap.String("request_id", req.RequestID),
		zap.String("idempotency_key", req.TaskRequest.IdempotencyKey))
	return res, nil
}

const insertStepsSQL = `
	WITH ins AS (
	  INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, position, callable, initialization,
	    max_attempts, retryable, backoff_base, backoff_max, created_at, updated_at)
	  SELECT u.step_uuid, $1, u.name, u.position, u.callable, u.initialization,
	         u.max_attempts, u.retryable, u.backoff_base, u.backoff_max, $2, $2
	  FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::jsonb[], $8::int[], $9::bool[],
	              $10::interval[], $11::interval[])
	       AS u(step_uuid, name, position, callable, initialization, max_attempts, retryable, backoff_base, backoff_max)
	  RETURNING step_uuid
	)
	INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	SELECT step_uuid, $1, NULL, 'pending', 0, 'created', $2 FROM ins`

const insertEdgesSQL = `
	INSERT INTO tasker.workflow_step_edges (parent_uuid, child_uuid)
	SELECT u.parent_uuid, u.child_uuid FROM unnest($1::uuid[], $2::uuid[]) AS u(parent_uuid, child_uuid)`

// queueInsertSteps queues the inserts of the steps (with history) and the edges of a new task.
func queueInsertSteps(b *pgx.Batch, taskUUID uuid.UUID, t *template.Template, now time.Time) error {
	n := len(t.Steps)
	var (
		ids       = make([]uuid.UUID, n)
		names     = make([]string, n)
		positions = make([]int32, n)
		callables = make([]string, n)
		inits     = make([]json.RawMessage, n)
		maxAtt    = make([]int32, n)
		retryable = make([]bool, n)
		bases     = make([]time.Duration, n)
		maxes     = make([]time.Duration, n)
		byName    = make(map[string]uuid.UUID, n)
	)
	for i, s := range t.Steps {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("new step uuid: %w", err)
		}
		init := []byte("{}")
		if len(s.Handler.Initialization) > 0 {
			if init, err = json.Marshal(s.Handler.Initialization); err != nil {
				return fmt.Errorf("step %q: encode initialization: %w", s.Name, err)
			}
		}
		ids[i], names[i], positions[i], callables[i], inits[i] = id, s.Name, int32(i), s.Handler.Callable, init
		maxAtt[i], retryable[i], bases[i], maxes[i] = int32(s.Retry.MaxAttempts), s.Retry.Retryable, s.Retry.BackoffBase, s.Retry.BackoffMax
		byName[s.Name] = id
	}
	var parents, children []uuid.UUID
	for i, s := range t.Steps {
		for _, dep := range s.Dependencies {
			p, ok := byName[dep]
			if !ok {
				return fmt.Errorf("step %q: unknown dependency %q", s.Name, dep)
			}
			parents = append(parents, p)
			children = append(children, ids[i])
		}
	}
	exec := func(pgconn.CommandTag) error { return nil }
	b.Queue(insertStepsSQL, taskUUID, now, ids, names, positions, callables, inits, maxAtt, retryable, bases, maxes).Exec(exec)
	if len(parents) > 0 {
		b.Queue(insertEdgesSQL, parents, children).Exec(exec)
	}
	return nil
}

// taskIdentity returns the deduplication identity of a request (nil: none), see the package
// documentation. The idempotency key and the context hash are prefixed differently so the two
// kinds can never collide.
func taskIdentity(t *template.Template, spec messages.TaskRequestSpec) (*string, error) {
	if spec.IdempotencyKey != "" {
		return hashIdentity("idempotency_key", []byte(spec.IdempotencyKey)), nil
	}
	switch strategyOf(t) {
	case template.IdentityAlwaysUnique:
		return nil, nil
	case template.IdentityCallerProvided:
		return nil, commands.Permanent(messages.ReasonValidation, &messages.ValidationError{
			Field:  "task_request.idempotency_key",
			Reason: fmt.Sprintf("required: template %s has identity_strategy caller_provided", t.Key()),
		})
	default: // strict
		canon, err := canonicalJSON(spec.Context)
		if err != nil {
			return nil, commands.Permanent(messages.ReasonValidation,
				&messages.ValidationError{Field: "task_request.context", Reason: err.Error()})
		}
		return hashIdentity("strict", append([]byte(t.Key()+"\n"), canon...)), nil
	}
}

func hashIdentity(kind string, data []byte) *string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(data)
	s := hex.EncodeToString(h.Sum(nil))
	return &s
}

// canonicalJSON re-encodes a JSON value with object keys sorted and no insignificant white
// space, so that equal documents written differently hash alike. Numbers keep their written
// form (1 and 1.0 differ).
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: data after the value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
