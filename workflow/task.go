package workflow

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
)

// newTask is one request of a batch on its way to becoming a task.
type newTask struct {
	item      int // index of the request in the batch
	spec      messages.TaskRequestSpec
	requestID string
	reg       registeredTemplate
	identity  *string
	task      lockedTask
	dupOf     int // for a repeat of an identity within the batch: the newTask it repeats, else -1
	created   bool
	roots     []outgoing
	// existing is the task a duplicate resolves to.
	existing commands.TaskInitializeResult
}

// InitializeTasks creates tasks and their steps from task requests and dispatches their root
// steps (see docs/protocol.md), inside tx.
//
// An unknown template is a *commands.PermanentError with reason "unknown_template"; a
// caller_provided template without an idempotency key, or a context that is not a JSON object,
// is one with reason "validation_failed"; either fails that request alone. A request whose
// identity matches an existing task, or an earlier request of the same batch, creates nothing
// and returns that task with Created false (see the package documentation).
//
// The batch costs three round trips whatever its size: the template lookup; one statement
// that inserts the tasks, their steps (root steps already enqueued), edges and history; and the
// dispatches of the root steps (one send per worker queue) with the lookup of duplicates.
// The tasks are inserted in identity order, so two batches that both carry identities A and B
// wait for each other in one order only and cannot deadlock.
func (e *Engine) InitializeTasks(ctx context.Context, tx pgx.Tx, reqs []messages.TaskRequest) ([]actor.Result[commands.TaskInitializeResult], error) {
	now := e.now()
	out := make([]actor.Result[commands.TaskInitializeResult], len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	keys := make([]templateKey, len(reqs))
	for i, r := range reqs {
		keys[i] = templateKey{r.TaskRequest.Namespace, r.TaskRequest.Name, r.TaskRequest.Version}
	}
	regs, err := e.lookupTemplates(ctx, tx, keys)
	if err != nil {
		return nil, err
	}

	var tasks []*newTask
	firstOf := map[string]int{} // template id + identity → index in tasks
	for i, req := range reqs {
		nt, err := e.prepare(i, req, regs, keys[i])
		if err != nil {
			out[i].Err = err
			continue
		}
		nt.dupOf = -1
		if nt.identity != nil {
			k := fmt.Sprintf("%d/%s", nt.reg.id, *nt.identity)
			if j, ok := firstOf[k]; ok {
				nt.dupOf = j
			} else {
				firstOf[k] = len(tasks)
			}
		}
		tasks = append(tasks, nt)
	}
	if err := e.insertTasks(ctx, tx, tasks, now); err != nil {
		return nil, err
	}
	if err := e.dispatchRoots(ctx, tx, tasks, now); err != nil {
		return nil, err
	}
	for _, nt := range tasks {
		var r commands.TaskInitializeResult
		switch {
		case nt.dupOf >= 0 && tasks[nt.dupOf].created:
			first := tasks[nt.dupOf]
			r = commands.TaskInitializeResult{TaskUUID: first.task.uuid, CorrelationID: first.task.correlationID}
		case nt.dupOf >= 0:
			r = tasks[nt.dupOf].existing
		case nt.created:
			r = commands.TaskInitializeResult{TaskUUID: nt.task.uuid, CorrelationID: nt.task.correlationID,
				Created: true, StepsEnqueued: len(nt.roots)}
		default:
			r = nt.existing
		}
		if !r.Created {
			e.log.Debug("duplicate task request", zap.String("template", nt.reg.t.Key()),
				zap.Stringer("task_uuid", r.TaskUUID), zap.String("request_id", reqs[nt.item].RequestID),
				zap.String("idempotency_key", reqs[nt.item].TaskRequest.IdempotencyKey))
		}
		out[nt.item].Value = r
	}
	return out, nil
}

// prepare validates one request and gives its task and steps their ids.
func (e *Engine) prepare(i int, req messages.TaskRequest, regs map[templateKey]registeredTemplate, key templateKey) (*newTask, error) {
	spec := req.TaskRequest
	reg, ok := regs[key]
	if !ok {
		return nil, commands.Permanent("unknown_template", fmt.Errorf("template %s is not registered", key))
	}
	if err := messages.ValidateTaskContext(spec.Context); err != nil {
		return nil, commands.Permanent(messages.ReasonValidation, err)
	}
	identity, err := taskIdentity(reg.t, spec)
	if err != nil {
		return nil, err
	}
	correlationID := spec.CorrelationID
	if correlationID == uuid.Nil {
		if correlationID, err = uuid.NewV7(); err != nil {
			return nil, fmt.Errorf("new correlation id: %w", err)
		}
	}
	taskUUID, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new task uuid: %w", err)
	}
	t := reg.t
	return &newTask{item: i, spec: spec, requestID: req.RequestID, reg: reg, identity: identity, task: lockedTask{
		uuid: taskUUID, correlationID: correlationID, namespace: t.Namespace, name: t.Name,
		version: t.Version, state: TaskStepsInProcess, context: spec.Context,
	}}, nil
}

// insertTasksSQL inserts the tasks unless their identity exists, then for the tasks it
// inserted: their history (created, then steps in process), their steps with history (root
// steps enqueued for attempt 1, the others pending) and their edges. It returns the tasks it
// inserted. Foreign keys are checked at the end of the statement, when every row is in.
const insertTasksSQL = `
	WITH t AS (
	  SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
	                       $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::jsonb[], $16::int[])
	    WITH ORDINALITY AS t(task_uuid, correlation_id, template_id, namespace, name, version, context, identity_hash,
	                         idempotency_key, request_id, initiator, source_system, reason, tags, priority, ord)
	), ins AS (
	  INSERT INTO tasker.workflow_tasks (task_uuid, correlation_id, template_id, namespace, name, version, state,
	    context, identity_hash, idempotency_key, request_id, initiator, source_system, reason, tags, priority,
	    created_at, updated_at)
	  SELECT task_uuid, correlation_id, template_id, namespace, name, version, $17::text,
	         context, identity_hash, idempotency_key, request_id, initiator, source_system, reason,
	         ARRAY(SELECT jsonb_array_elements_text(t.tags)), priority, $1::timestamptz, $1::timestamptz
	  FROM t ORDER BY ord
	  ON CONFLICT (template_id, identity_hash) DO NOTHING
	  RETURNING task_uuid
	), task_history AS (
	  INSERT INTO tasker.workflow_task_transitions (task_uuid, from_state, to_state, reason, created_at)
	  SELECT i.task_uuid, h.from_state, h.to_state, h.reason, $1::timestamptz
	  FROM ins i CROSS JOIN unnest($18::text[], $19::text[], $20::text[]) WITH ORDINALITY AS h(from_state, to_state, reason, n)
	  ORDER BY i.task_uuid, h.n
	), s AS (
	  SELECT * FROM unnest($21::uuid[], $22::uuid[], $23::text[], $24::int[], $25::text[], $26::jsonb[], $27::int[],
	                       $28::bool[], $29::interval[], $30::interval[], $31::bool[])
	    WITH ORDINALITY AS s(step_uuid, task_uuid, name, position, callable, initialization, max_attempts, retryable,
	                         backoff_base, backoff_max, root, ord)
	  WHERE s.task_uuid IN (SELECT task_uuid FROM ins)
	), steps AS (
	  INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, position, callable, initialization,
	    max_attempts, retryable, backoff_base, backoff_max, state, attempts, created_at, updated_at)
	  SELECT step_uuid, task_uuid, name, position, callable, initialization, max_attempts, retryable, backoff_base,
	         backoff_max, CASE WHEN root THEN $33::text ELSE $32::text END, CASE WHEN root THEN 1 ELSE 0 END,
	         $1::timestamptz, $1::timestamptz
	  FROM s ORDER BY ord
	), step_history AS (
	  INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason, created_at)
	  SELECT step_uuid, task_uuid, NULL, $32::text, 0, $34::text, $1::timestamptz FROM s
	  UNION ALL
	  SELECT step_uuid, task_uuid, $32::text, $33::text, 1, $35::text, $1::timestamptz FROM s WHERE root
	), edges AS (
	  INSERT INTO tasker.workflow_step_edges (parent_uuid, child_uuid)
	  SELECT e.parent_uuid, e.child_uuid FROM unnest($36::uuid[], $37::uuid[], $38::uuid[]) AS e(parent_uuid, child_uuid, task_uuid)
	  WHERE e.task_uuid IN (SELECT task_uuid FROM ins)
	)
	SELECT task_uuid FROM ins`

// insertTasks inserts the tasks (repeats of an identity within the batch excepted) with one
// statement, and marks the ones created; the root dispatches of those are prepared.
func (e *Engine) insertTasks(ctx context.Context, tx pgx.Tx, tasks []*newTask, now time.Time) error {
	var batch []*newTask
	for _, nt := range tasks {
		if nt.dupOf < 0 {
			batch = append(batch, nt)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	slices.SortStableFunc(batch, func(a, b *newTask) int {
		// Tasks without an identity never conflict: they go last, in any order.
		if a.identity == nil || b.identity == nil {
			return cmp.Compare(boolInt(a.identity == nil), boolInt(b.identity == nil))
		}
		return cmp.Or(cmp.Compare(a.reg.id, b.reg.id), strings.Compare(*a.identity, *b.identity))
	})
	n := len(batch)
	var (
		taskIDs, corrIDs                           = make([]uuid.UUID, n), make([]uuid.UUID, n)
		templateIDs                                = make([]int64, n)
		namespaces, names, versions                = make([]string, n), make([]string, n), make([]string, n)
		contexts, tags                             = make([]json.RawMessage, n), make([]json.RawMessage, n)
		identities, keys, requestIDs               = make([]*string, n), make([]*string, n), make([]*string, n)
		initiators, sources, reasons               = make([]*string, n), make([]*string, n), make([]*string, n)
		priorities                                 = make([]int32, n)
		stepIDs, stepTasks, parents, children, eTs []uuid.UUID
		stepNames, callables                       []string
		positions, maxAttempts                     []int32
		inits                                      []json.RawMessage
		retryable, roots                           []bool
		bases, maxes                               []time.Duration
	)
	byUUID := make(map[uuid.UUID]*newTask, n)
	for i, nt := range batch {
		spec := nt.spec
		byUUID[nt.task.uuid] = nt
		taskIDs[i], corrIDs[i], templateIDs[i] = nt.task.uuid, nt.task.correlationID, nt.reg.id
		namespaces[i], names[i], versions[i] = nt.task.namespace, nt.task.name, nt.task.version
		contexts[i], identities[i] = nt.task.context, nt.identity
		keys[i], requestIDs[i] = nullIfEmpty(spec.IdempotencyKey), nullIfEmpty(nt.requestID)
		initiators[i], sources[i], reasons[i] = nullIfEmpty(spec.Initiator), nullIfEmpty(spec.SourceSystem), nullIfEmpty(spec.Reason)
		priorities[i] = int32(spec.Priority)
		t := spec.Tags
		if t == nil {
			t = []string{}
		}
		tj, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("initialize task %s: encode tags: %w", nt.task.uuid, err)
		}
		tags[i] = tj

		ids := make(map[string]uuid.UUID, len(nt.reg.t.Steps))
		for pos, s := range nt.reg.t.Steps {
			id, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("new step uuid: %w", err)
			}
			init := json.RawMessage("{}")
			if len(s.Handler.Initialization) > 0 {
				if init, err = json.Marshal(s.Handler.Initialization); err != nil {
					return fmt.Errorf("template %s: step %q: encode initialization: %w", nt.reg.t.Key(), s.Name, err)
				}
			}
			ids[s.Name] = id
			root := len(s.Dependencies) == 0
			stepIDs, stepTasks, stepNames = append(stepIDs, id), append(stepTasks, nt.task.uuid), append(stepNames, s.Name)
			positions, callables, inits = append(positions, int32(pos)), append(callables, s.Handler.Callable), append(inits, init)
			maxAttempts, retryable = append(maxAttempts, int32(s.Retry.MaxAttempts)), append(retryable, s.Retry.Retryable)
			bases, maxes, roots = append(bases, s.Retry.BackoffBase), append(maxes, s.Retry.BackoffMax), append(roots, root)
			if root {
				body, err := dispatchBody(&nt.task, id, s.Name, s.Handler.Callable, init, 1, s.Retry.MaxAttempts, nil)
				if err != nil {
					return err
				}
				nt.roots = append(nt.roots, outgoing{taskUUID: nt.task.uuid, stepUUID: id, attempt: 1, body: body})
			}
		}
		for _, s := range nt.reg.t.Steps {
			for _, dep := range s.Dependencies {
				p, ok := ids[dep]
				if !ok {
					return fmt.Errorf("template %s: step %q: unknown dependency %q", nt.reg.t.Key(), s.Name, dep)
				}
				parents, children, eTs = append(parents, p), append(children, ids[s.Name]), append(eTs, nt.task.uuid)
			}
		}
	}
	rows, err := tx.Query(ctx, insertTasksSQL, now,
		uuidArgs(taskIDs), uuidArgs(corrIDs), templateIDs, namespaces, names, versions, contexts, identities, keys, requestIDs,
		initiators, sources, reasons, tags, priorities, TaskStepsInProcess,
		[]*string{nil, ptr(TaskPending)}, []string{TaskPending, TaskStepsInProcess}, []string{"created", "steps in process"},
		uuidArgs(stepIDs), uuidArgs(stepTasks), stepNames, positions, callables, inits, maxAttempts, retryable, bases, maxes, roots,
		StepPending, StepEnqueued, "created", readyReason, uuidArgs(parents), uuidArgs(children), uuidArgs(eTs))
	if err != nil {
		return fmt.Errorf("initialize %d task(s): insert: %w", n, err)
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("initialize %d task(s): insert: %w", n, err)
	}
	for _, id := range created {
		byUUID[id].created = true
	}
	return nil
}

// findDuplicatesSQL finds the existing tasks of identities. It runs in a statement of its own
// after the insert: after ON CONFLICT DO NOTHING waited for a concurrent insert of the same
// identity to commit, only a new statement sees that row.
const findDuplicatesSQL = `
	SELECT w.template_id, w.identity_hash, w.task_uuid, w.correlation_id
	FROM tasker.workflow_tasks w
	JOIN unnest($1::bigint[], $2::text[]) AS k(template_id, identity_hash)
	  ON w.template_id = k.template_id AND w.identity_hash = k.identity_hash`

// dispatchRoots sends the root steps of the created tasks and looks up the tasks that the
// others duplicate, in one round trip.
func (e *Engine) dispatchRoots(ctx context.Context, tx pgx.Tx, tasks []*newTask, now time.Time) error {
	b := &pgx.Batch{}
	var sends []outgoing
	namespaces := map[uuid.UUID]string{}
	var dupTemplates []int64
	var dupIdentities []string
	dups := map[string]*newTask{}
	for _, nt := range tasks {
		switch {
		case nt.created:
			sends = append(sends, nt.roots...)
			namespaces[nt.task.uuid] = nt.task.namespace
		case nt.dupOf < 0:
			dupTemplates, dupIdentities = append(dupTemplates, nt.reg.id), append(dupIdentities, *nt.identity)
			dups[fmt.Sprintf("%d/%s", nt.reg.id, *nt.identity)] = nt
		}
	}
	queueSends(b, sends, namespaces, now)
	if len(dups) > 0 {
		b.Queue(findDuplicatesSQL, dupTemplates, dupIdentities).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id int64
				var identity string
				var r commands.TaskInitializeResult
				if err := rows.Scan(&id, &identity, &r.TaskUUID, &r.CorrelationID); err != nil {
					return err
				}
				if nt := dups[fmt.Sprintf("%d/%s", id, identity)]; nt != nil {
					nt.existing = r
				}
			}
			return rows.Err()
		})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("initialize %d task(s): dispatch root steps: %w", len(tasks), err)
	}
	for _, nt := range dups {
		if nt.existing.TaskUUID == uuid.Nil {
			return fmt.Errorf("initialize task (%s): find duplicate: the conflicting task is not visible (not READ COMMITTED?)", nt.reg.t.Key())
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ptr[T any](v T) *T { return &v }

// taskIdentity returns the deduplication identity of a request (nil: none), see the package
// documentation. The idempotency key and the context hash are prefixed differently so the two
// kinds can never collide.
func taskIdentity(t *template.Template, spec messages.TaskRequestSpec) (*string, error) {
	if spec.IdempotencyKey != "" {
		return hashIdentity("idempotency_key", []byte(spec.IdempotencyKey)), nil
	}
	switch t.Strategy() {
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

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
