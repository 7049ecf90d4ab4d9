package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/poller"
)

// run is the state one Run call shares with the goroutines processing its messages.
type run struct {
	w          *Worker
	c          *config
	log        *zap.Logger
	handlerCtx context.Context // cancelled when the shutdown timeout runs out
	dbCtx      context.Context // never cancelled; each operation has its own timeout
	forced     atomic.Bool     // the shutdown timeout ran out
	results    chan resultReq  // finished steps waiting for the group commit

	poller   *poller.Poller // finds and claims work (see intake)
	running  atomic.Int64   // handlers running
	handlers sync.WaitGroup // one per running handler
}

// resultReq is one finished step waiting to be committed.
type resultReq struct {
	m    pgmq.Message
	body json.RawMessage
	done chan error // nil, errAlreadyDeleted or the transaction's error
}

// maxCommitGroup bounds the results committed in one transaction.
const maxCommitGroup = 64

// errAlreadyDeleted rolls back a result transaction whose dispatch is gone.
var errAlreadyDeleted = errors.New("dispatch already deleted")

// process handles one claimed message from start to acknowledgement.
func (r *run) process(m pgmq.Message) {
	w, c := r.w, r.c
	log := r.log.With(zap.Int64("msg_id", m.ID), zap.Int32("read_ct", m.ReadCount))
	d, err := messages.DecodeStepDispatch(m.Body)
	if err != nil {
		r.archive(m, log, err)
		return
	}
	log = log.With(zap.Stringer("task_uuid", d.TaskUUID), zap.Stringer("step_uuid", d.StepUUID),
		zap.Stringer("correlation_id", d.CorrelationID), zap.String("step_name", d.StepName),
		zap.String("callable", d.Handler.Callable), zap.Int("attempt", d.Attempt))

	stopHeartbeat := r.heartbeat(m.ID, log)
	start := c.now()
	var info messages.StepExecutionInfo
	h := w.handler(d.Handler.Callable)
	if h == nil {
		err := WithErrorType(Permanent(fmt.Errorf("no handler registered for callable %q on worker %s (queue %s)",
			d.Handler.Callable, c.workerID, c.queue)), ErrorTypeUnknownCallable)
		info = outcome(nil, err)
		log.Error("worker: unknown callable; reporting a permanent error", zap.Error(err))
	} else {
		w.testSignals.started.Signal(m.ID)
		value, err := call(r.handlerCtx, h, newStep(d, m.ID, m.ReadCount))
		if err != nil && r.forced.Load() && r.handlerCtx.Err() != nil {
			stopHeartbeat()
			r.release(m, log, err)
			return
		}
		info = outcome(value, err)
		r.logOutcome(log, info, err)
	}
	elapsed := c.now().Sub(start)
	info.Metadata, _ = json.Marshal(resultMetadata{ExecutionTimeMS: elapsed.Milliseconds(), WorkerID: c.workerID})
	stopHeartbeat()

	body, err := json.Marshal(messages.StepResult{
		TaskUUID: d.TaskUUID, StepUUID: d.StepUUID, CorrelationID: d.CorrelationID, Attempt: d.Attempt, Result: info,
	})
	if err != nil { // cannot happen: every part is already valid JSON
		log.Error("worker: encode step result; the dispatch reappears after its visibility timeout", zap.Error(err))
		return
	}
	// jsonb cannot hold NUL: a result or error text carrying one would be refused on every
	// delivery and the step would never reach an outcome.
	r.commit(m, log, messages.StripNUL(body), info.Status != messages.StatusCompleted)
}

// resultMetadata is result.metadata (see docs/protocol.md).
type resultMetadata struct {
	ExecutionTimeMS int64  `json:"execution_time_ms"`
	WorkerID        string `json:"worker_id"`
}

// call runs h, turning a panic into an error.
func call(ctx context.Context, h Handler, step Step) (value any, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return h(ctx, step)
}

// outcome maps a handler's return values to the result's execution info (without metadata).
func outcome(value any, err error) messages.StepExecutionInfo {
	if err == nil {
		b, merr := json.Marshal(value)
		if merr == nil {
			return messages.StepExecutionInfo{Success: true, Status: messages.StatusCompleted, Result: b}
		}
		err = WithErrorType(Permanent(fmt.Errorf("encode result as JSON: %w", merr)), ErrorTypeInvalidResult)
	}
	info := messages.StepExecutionInfo{
		Status: messages.StatusFailed,
		Error:  &messages.StepError{Message: err.Error(), ErrorType: errorType(err), Retryable: true},
	}
	var cl *classified
	if errors.As(err, &cl) {
		if cl.permanent {
			info.Status = messages.StatusError
			info.Error.Retryable = false
		} else if cl.hasDelay {
			info.OrchestrationMetadata = &messages.OrchestrationMetadata{
				BackoffHint: &messages.BackoffHint{DelaySeconds: cl.delay.Seconds()},
			}
		}
	}
	return info
}

func (r *run) logOutcome(log *zap.Logger, info messages.StepExecutionInfo, err error) {
	var p *panicError
	switch {
	case errors.As(err, &p):
		log.Error("worker: handler panicked; reporting a retryable failure",
			zap.Any("panic", p.value), zap.ByteString("stack", p.stack))
	case info.Status == messages.StatusCompleted:
		log.Debug("worker: step completed")
	default:
		log.Warn("worker: step failed", zap.Stringer("status", info.Status),
			zap.Bool("retryable", info.Error.Retryable), zap.String("error_type", info.Error.ErrorType), zap.Error(err))
	}
}

// commit hands the result to the committer, which deletes the dispatch and sends the result in
// one transaction (shared with other results ready at the same moment), and records the outcome.
func (r *run) commit(m pgmq.Message, log *zap.Logger, body json.RawMessage, failed bool) {
	req := resultReq{m: m, body: body, done: make(chan error, 1)}
	r.results <- req
	err := <-req.done
	switch {
	case err == nil:
		r.w.processed.Add(1)
		if failed {
			r.w.failed.Add(1)
		}
		r.w.testSignals.committed.Signal(m.ID)
	case errors.Is(err, errAlreadyDeleted):
		log.Warn("worker: dispatch already deleted (delivered again and finished elsewhere); result dropped as a duplicate")
		r.w.testSignals.duplicate.Signal(m.ID)
	default:
		log.Error("worker: result not sent; the dispatch reappears after its visibility timeout and the step runs again",
			zap.Error(err))
	}
}

// committer commits finished steps in groups: whatever results are waiting when a transaction
// starts go into it (one statement that deletes the dispatches and sends the results, so one
// commit and one NOTIFY), so a busy worker pays one round trip for many steps while a single
// result waits for nobody. It returns when results is closed.
func (r *run) committer() {
	for first := range r.results {
		group := []resultReq{first}
	more:
		for len(group) < maxCommitGroup {
			select {
			case req, ok := <-r.results:
				if !ok {
					break more
				}
				group = append(group, req)
			default:
				break more
			}
		}
		if len(group) > 1 {
			deleted, err := r.commitGroup(group)
			if err == nil {
				for _, req := range group {
					req.done <- deletedOutcome(deleted[req.m.ID])
				}
				continue
			}
			r.log.Warn("worker: group result transaction failed; committing one at a time", zap.Int("results", len(group)), zap.Error(err))
		}
		// One at a time: a lone result, or a group whose transaction failed (each result then
		// keeps its own outcome).
		for _, req := range group {
			req.done <- r.commitOne(req)
		}
	}
}

func deletedOutcome(deleted bool) error {
	if deleted {
		return nil
	}
	return errAlreadyDeleted
}

// commitSQL deletes the dispatches $2 from the worker queue $1 and sends, in the order given,
// the results $4 of those it deleted to $3, in one statement and so one transaction: a
// dispatch already deleted (delivered again and finished elsewhere) sends nothing, and
// send_batch, which refuses an empty array, is not called when nothing is left. The send CTE
// is referenced by the final SELECT so that it runs.
const commitSQL = `
	WITH gone AS (
	  SELECT d.id FROM pgmq.delete($1::text, $2::bigint[]) AS d(id)
	), kept AS (
	  SELECT ARRAY(SELECT r.body FROM unnest($2::bigint[], $4::jsonb[]) WITH ORDINALITY AS r(id, body, n)
	               WHERE r.id IN (SELECT id FROM gone) ORDER BY r.n) AS bodies
	), sent AS (
	  SELECT s.id FROM kept, pgmq.send_batch($3::text, kept.bodies, 0) AS s(id) WHERE cardinality(kept.bodies) > 0
	)
	SELECT id FROM gone WHERE (SELECT count(*) FROM sent) >= 0`

// commitGroup runs commitSQL for the group and returns the dispatches it deleted (and whose
// results it sent).
func (r *run) commitGroup(group []resultReq) (map[int64]bool, error) {
	ids := make([]int64, len(group))
	bodies := make([]json.RawMessage, len(group))
	for i, req := range group {
		ids[i], bodies[i] = req.m.ID, req.body
	}
	ctx, cancel := context.WithTimeout(r.dbCtx, r.c.opTimeout)
	defer cancel()
	rows, err := r.c.pool.Query(ctx, commitSQL, r.c.queue, ids, messages.QueueStepResults, bodies)
	if err != nil {
		return nil, fmt.Errorf("commit %d result(s): %w", len(group), err)
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("commit %d result(s): %w", len(group), err)
	}
	deleted := make(map[int64]bool, len(gone))
	for _, id := range gone {
		deleted[id] = true
	}
	return deleted, nil
}

// commitOne commits one result, retrying a failed transaction a few times.
func (r *run) commitOne(req resultReq) error {
	var err error
	for try := 1; try <= resultTries; try++ {
		if try > 1 {
			time.Sleep(time.Duration(try-1) * 200 * time.Millisecond)
		}
		var deleted map[int64]bool
		if deleted, err = r.commitGroup([]resultReq{req}); err == nil {
			return deletedOutcome(deleted[req.m.ID])
		}
		r.log.Warn("worker: result transaction failed", zap.Int64("msg_id", req.m.ID), zap.Int("try", try), zap.Error(err))
	}
	return err
}

// archive moves a dispatch that can never run to the queue's archive.
func (r *run) archive(m pgmq.Message, log *zap.Logger, cause error) {
	ctx, cancel := context.WithTimeout(r.dbCtx, r.c.opTimeout)
	defer cancel()
	if _, err := pgmq.Archive(ctx, r.c.pool, r.c.queue, m.ID); err != nil {
		log.Error("worker: malformed step dispatch; archiving failed, it reappears after its visibility timeout",
			zap.NamedError("cause", cause), zap.Error(err), zap.String("body", textutil.Truncate(string(m.Body), 1024)))
		return
	}
	log.Error("worker: malformed step dispatch archived: it can never run",
		zap.Error(cause), zap.String("body", textutil.Truncate(string(m.Body), 1024)))
	r.w.processed.Add(1)
	r.w.failed.Add(1)
	r.w.testSignals.archived.Signal(m.ID)
}

// release makes the dispatch of a handler cut off at shutdown visible again at once, so another
// worker runs it without waiting for the visibility timeout.
func (r *run) release(m pgmq.Message, log *zap.Logger, cause error) {
	ctx, cancel := context.WithTimeout(r.dbCtx, r.c.opTimeout)
	defer cancel()
	if _, _, err := pgmq.SetVT(ctx, r.c.pool, r.c.queue, m.ID, 0); err != nil {
		log.Warn("worker: handler cut off at shutdown; release failed, the dispatch reappears after its visibility timeout",
			zap.NamedError("cause", cause), zap.Error(err))
	} else {
		log.Warn("worker: handler cut off at shutdown; dispatch released for another worker", zap.NamedError("cause", cause))
	}
	r.w.testSignals.abandoned.Signal(m.ID)
}

// heartbeat extends the dispatch's visibility timeout every HeartbeatInterval until the
// returned stop function is called; stop waits for an extension in progress.
func (r *run) heartbeat(msgID int64, log *zap.Logger) (stop func()) {
	c := r.c
	if c.heartbeat < 0 {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(r.dbCtx, c.vt)
			_, ok, err := pgmq.SetVT(ctx, c.pool, c.queue, msgID, c.vt)
			cancel()
			switch {
			case err != nil:
				log.Warn("worker: heartbeat failed; retrying at the next one", zap.Error(err))
			case !ok:
				log.Warn("worker: heartbeat found the dispatch gone (delivered again and finished elsewhere?)")
				return
			default:
				r.w.testSignals.heartbeat.Signal(msgID)
			}
		}
	}()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			close(quit)
		}
		<-done
	}
}
