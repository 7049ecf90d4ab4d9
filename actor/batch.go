package actor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// item is one claimed message in a batch.
type item struct {
	w       commands.ProcessMessage
	msg     pgmq.Message
	h       hydrated
	outcome commands.Outcome
	detail  string
	err     error
	dlq     *messages.DeadLetter
	// ackedByClaim: the claim dead-lettered and deleted the message already (too large).
	ackedByClaim bool
	started      time.Time
	took         time.Duration
}

// runBatch processes the messages of one batch (one queue) in one transaction.
func (a *Actor) runBatch(batch []commands.ProcessMessage) {
	ctx := a.workCtx
	queue := batch[0].Queue
	start := a.now()
	items, notFound, committed, err := a.processBatch(ctx, queue, batch)
	if err != nil && items == nil && notFound == nil {
		// Failed before or during the claim: no message was found missing, every one failed.
		for _, w := range batch {
			items = append(items, &item{w: w})
		}
	}
	if err != nil {
		// The transaction did not commit: no effect and no ack for any message, and its claims
		// are undone, so those messages are visible again right away.
		for _, it := range items {
			it.outcome, it.err, it.detail, it.dlq = commands.OutcomeFailed, err, "batch transaction failed", nil
		}
		if ctx.Err() == nil {
			a.log.Error("batch transaction failed; its messages will be redelivered",
				zap.String("queue", queue), zap.Int("messages", len(batch)), zap.Error(err))
		}
	}
	a.obs.BatchDone(queue, len(batch), a.now().Sub(start), committed)
	for _, w := range notFound {
		a.finish(&item{w: w, outcome: commands.OutcomeNotFound, detail: "not claimable: already claimed, deleted or not yet visible"})
	}
	for _, it := range items {
		a.finish(it)
	}
}

// processBatch runs the batch transaction. It returns the claimed items with their outcomes and
// the messages that could not be claimed.
func (a *Actor) processBatch(ctx context.Context, queue string, batch []commands.ProcessMessage) (items []*item, notFound []commands.ProcessMessage, committed bool, err error) {
	tx, err := a.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, nil, false, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// The savepoint the handlers roll back to on a failure goes in the claim's round trip.
	items, notFound, err = a.claim(ctx, tx, queue, batch)
	if err != nil {
		return nil, nil, false, err
	}
	var runnable []*item
	for _, it := range items {
		if !it.ackedByClaim && a.hydrate(it) {
			runnable = append(runnable, it)
		}
	}
	if len(runnable) > 0 {
		if err := a.runHandlers(ctx, tx, queue, runnable); err != nil {
			return items, notFound, false, err
		}
	}
	if err := a.ack(ctx, tx, queue, items); err != nil {
		return items, notFound, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return items, notFound, false, fmt.Errorf("commit: %w", err)
	}
	return items, notFound, true, nil
}

// claim claims the batch's messages in tx with read_specific_messages and the configured
// visibility timeout, and takes the handlers' savepoint, in one round trip. A message it cannot
// claim (claimed by someone else, deleted, not yet visible, or locked by another transaction)
// is not found; an id announced twice in one batch is handled once. Every message claimed is
// locked by tx until it ends, so nobody else can claim or delete it meanwhile, even once its
// visibility timeout has passed.
func (a *Actor) claim(ctx context.Context, tx pgx.Tx, queue string, batch []commands.ProcessMessage) ([]*item, []commands.ProcessMessage, error) {
	ids := make([]int64, len(batch))
	for i, w := range batch {
		ids[i] = w.MsgID
	}
	var claimed []claimedMessage
	b := &pgx.Batch{}
	b.Queue(claimSQL, queue, ids, timeutil.CeilSeconds(a.cfg.VisibilityTimeout), a.cfg.MaxMessageBytes).Query(func(rows pgx.Rows) error {
		var err error
		claimed, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimedMessage, error) {
			var c claimedMessage
			m := &c.msg
			err := row.Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.VT, &m.Body, &m.Headers, &c.size)
			return c, err
		})
		return err
	})
	b.Queue("SAVEPOINT handlers")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("claim %s: %w", queue, err)
	}
	byID := make(map[int64]claimedMessage, len(claimed))
	for _, c := range claimed {
		byID[c.msg.ID] = c
	}
	var items []*item
	var notFound []commands.ProcessMessage
	for _, w := range batch {
		c, ok := byID[w.MsgID]
		if !ok {
			notFound = append(notFound, w)
			continue
		}
		delete(byID, c.msg.ID)
		it := &item{w: w, msg: c.msg}
		if c.size > a.cfg.MaxMessageBytes {
			// Dead-lettered and deleted by the claim itself; its body never came here.
			it.outcome, it.detail, it.ackedByClaim = commands.OutcomeDeadLettered, messages.ReasonMessageTooLarge, true
			it.err = fmt.Errorf("body of %d bytes exceeds CONSUMER_MAX_MESSAGE_BYTES (%d bytes)", c.size, a.cfg.MaxMessageBytes)
		}
		items = append(items, it)
	}
	return items, notFound, nil
}

// claimSQL claims the announced messages that are claimable (see docs/protocol.md,
// "Claiming"); bodies over the size limit are dead-lettered by the function and come back
// without their body.
const claimSQL = `SELECT msg_id, read_ct, enqueued_at, vt, message, headers, size
	FROM tasker.pgmq_read_specific_messages($1::text, $2::bigint[], $3::integer, $4::bigint) ORDER BY msg_id`

// claimedMessage is a claimed message and the size of its body as text.
type claimedMessage struct {
	msg  pgmq.Message
	size int64
}

// hydrate decodes its body; a message that can never be processed is marked for the DLQ.
func (a *Actor) hydrate(it *item) bool {
	if int(it.msg.ReadCount) > a.cfg.MaxReadCount {
		a.deadLetter(it, messages.ReasonMaxReadCount,
			fmt.Errorf("delivered %d times, more than CONSUMER_MAX_READ_COUNT=%d", it.msg.ReadCount, a.cfg.MaxReadCount))
		return false
	}
	hyd, ok := hydratorFor(it.w.Kind)
	if !ok {
		a.deadLetter(it, messages.ReasonValidation, fmt.Errorf("no hydrator for queue %s", it.w.Queue))
		return false
	}
	h, err := hyd(it.msg.Body)
	if err != nil {
		reason := messages.ReasonValidation
		if !json.Valid(it.msg.Body) {
			reason = messages.ReasonInvalidJSON
		}
		a.deadLetter(it, reason, err)
		return false
	}
	it.h = h
	return true
}

func (a *Actor) deadLetter(it *item, reason string, err error) {
	it.outcome, it.err, it.detail = commands.OutcomeDeadLettered, err, reason
	it.dlq = &messages.DeadLetter{
		SourceQueue: it.w.Queue, SourceMsgID: it.msg.ID, ReadCount: it.msg.ReadCount,
		Reason: reason, Error: err.Error(), Message: messages.OriginalBody(it.msg.Body), DeadLetteredAt: a.now().UTC(),
	}
}

// runHandlers hands the whole batch to its handler in one call, under the savepoint taken
// with the claim. If the call fails as a whole, it rolls back to that savepoint and isolates
// the message at fault by bisection: each half is called again under a savepoint of its own,
// a half that fails is split again, and a message that fails alone is classified. So the
// others keep their outcome at the cost of about 2·log2(n) extra calls, not one call each.
func (a *Actor) runHandlers(ctx context.Context, tx pgx.Tx, queue string, runnable []*item) error {
	if a.callHandler(ctx, tx, runnable) {
		return nil
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT handlers"); err != nil {
		return fmt.Errorf("rollback to savepoint: %w", err)
	}
	if err := a.bisect(ctx, tx, queue, runnable); err != nil {
		return err
	}
	return ctx.Err() // a cancelled batch must not commit half-done work
}

// bisect runs the two halves of part (which failed as a whole) each under its own savepoint.
func (a *Actor) bisect(ctx context.Context, tx pgx.Tx, queue string, part []*item) error {
	if len(part) == 1 {
		a.classifyFailure(part[0])
		return nil
	}
	mid := len(part) / 2
	for _, half := range [][]*item{part[:mid], part[mid:]} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT part"); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if a.callHandler(ctx, tx, half) {
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT part"); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT part; RELEASE SAVEPOINT part"); err != nil {
			return fmt.Errorf("rollback to savepoint: %w", err)
		}
		a.log.Debug("batch part failed; splitting it", zap.String("queue", queue), zap.Int("messages", len(half)),
			zap.Error(half[0].err))
		if err := a.bisect(ctx, tx, queue, half); err != nil {
			return err
		}
	}
	return nil
}

// callHandler calls the handler once for every item of part and records each one's outcome;
// it reports whether the call succeeded as a whole (a panic counts as a failure). On failure
// every item carries the call's error, and none has an outcome yet.
func (a *Actor) callHandler(ctx context.Context, tx pgx.Tx, part []*item) (ok bool) {
	started := a.now()
	hs := make([]*hydrated, len(part))
	for i, it := range part {
		hs[i] = &it.h
	}
	var (
		out []handled
		err error
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panic: %v", r)
			}
		}()
		out, err = handleBatch(ctx, tx, a.cfg.Handlers, part[0].w.Kind, hs)
	}()
	took := a.now().Sub(started)
	for i, it := range part {
		it.started, it.took = started, took
		if err != nil {
			it.err = err
			continue
		}
		switch o := out[i]; {
		case o.err != nil:
			it.err = o.err
			a.classifyFailure(it)
		case o.changed:
			it.outcome, it.detail, it.err = commands.OutcomeProcessed, o.detail, nil
		default:
			it.outcome, it.detail, it.err = commands.OutcomeSkipped, o.detail, nil
		}
	}
	return err == nil
}

// classifyFailure decides between dead-lettering and redelivery for a failed handler.
func (a *Actor) classifyFailure(it *item) {
	if p, ok := commands.AsPermanent(it.err); ok {
		a.deadLetter(it, p.Reason, it.err)
		return
	}
	// The database refusing the message's own data (a value too long for an index, an invalid
	// value) fails the same way on every delivery: no point in retrying it.
	var pgErr *pgconn.PgError
	if errors.As(it.err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54")) {
		a.deadLetter(it, messages.ReasonPermanentError, it.err)
		return
	}
	if int(it.msg.ReadCount) >= a.cfg.MaxReadCount {
		a.deadLetter(it, messages.ReasonRetriesExceeded, it.err)
		return
	}
	it.outcome, it.detail = commands.OutcomeFailed, "handler failed; redelivered after the visibility timeout"
}

// ack sends the batch's dead letters and deletes every message that is done (one round trip
// each).
func (a *Actor) ack(ctx context.Context, tx pgx.Tx, queue string, items []*item) error {
	var done []int64
	var letters []json.RawMessage
	for _, it := range items {
		switch {
		case it.ackedByClaim:
		case it.outcome == commands.OutcomeProcessed || it.outcome == commands.OutcomeSkipped:
			done = append(done, it.msg.ID)
		case it.outcome == commands.OutcomeDeadLettered:
			body, err := json.Marshal(it.dlq)
			if err != nil {
				return fmt.Errorf("encode dead letter for %s/%d: %w", queue, it.msg.ID, err)
			}
			letters = append(letters, body)
			done = append(done, it.msg.ID)
		}
	}
	if len(letters) > 0 {
		if _, err := pgmq.SendBatch(ctx, tx, messages.QueueDLQ, letters, pgmq.SendOptions{}); err != nil {
			return err
		}
	}
	if len(done) > 0 {
		deleted, err := pgmq.DeleteBatch(ctx, tx, queue, done)
		if err != nil {
			return err
		}
		if len(deleted) != len(done) {
			// We hold the claim, so this means someone deleted our messages under us.
			return fmt.Errorf("ack %s: deleted %d of %d messages", queue, len(deleted), len(done))
		}
	}
	return nil
}

// finish records a message's outcome: statistics, in-flight set, metrics, log and reply.
func (a *Actor) finish(it *item) {
	w := it.w
	ref := w.Ref()
	a.cfg.InFlight.Remove(ref)
	handled := it.started
	if handled.IsZero() { // never reached a handler (not found, dead-lettered unread, failed batch)
		handled = a.now()
	}
	a.obs.MessageDone(w.Queue, it.outcome, it.took, handled.Sub(w.ReceivedAt))
	a.logOutcome(ref, it)
	out := commands.MessageOutcome{Ref: ref, Outcome: it.outcome, Detail: it.detail, Err: it.err}
	execute(a, w.Kind, it.outcome, w.Reply, out, nil)
	a.TestSignals.Finished.Signal(out)
}

// logOutcome logs a failure once at error level, anything else at debug; the fields are built
// only when the line is written (this runs once per message).
func (a *Actor) logOutcome(ref commands.MsgRef, it *item) {
	level, msg := zapcore.DebugLevel, "message handled"
	switch it.outcome {
	case commands.OutcomeDeadLettered:
		level, msg = zapcore.ErrorLevel, "message dead-lettered"
	case commands.OutcomeFailed:
		level, msg = zapcore.ErrorLevel, "message failed; it will be redelivered"
	case commands.OutcomeNotFound:
		msg = "message not claimable"
	}
	ce := a.log.Check(level, msg)
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("queue", ref.Queue), zap.Int64("msg_id", ref.MsgID), zap.Int32("read_ct", it.msg.ReadCount),
		zap.Stringer("outcome", it.outcome),
	}
	if it.h.correlationID != [16]byte{} {
		fields = append(fields, zap.Stringer("correlation_id", it.h.correlationID))
	}
	if it.h.taskUUID != [16]byte{} {
		fields = append(fields, zap.Stringer("task_uuid", it.h.taskUUID))
	}
	if it.h.stepUUID != [16]byte{} {
		fields = append(fields, zap.Stringer("step_uuid", it.h.stepUUID))
	}
	switch it.outcome {
	case commands.OutcomeDeadLettered:
		fields = append(fields, zap.String("reason", it.detail), zap.Error(it.err))
	case commands.OutcomeFailed:
		fields = append(fields, zap.Error(it.err))
	case commands.OutcomeNotFound:
	default:
		fields = append(fields, zap.String("detail", it.detail))
	}
	ce.Write(fields...)
}
