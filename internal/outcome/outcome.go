package outcome

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/workflow"
)

// Kind is what became of a request.
type Kind int

const (
	// Pending: the request is still in orchestration_task_requests (waiting, being processed,
	// or failed and due for another delivery).
	Pending Kind = iota
	// Created: a task exists for the request.
	Created
	// Duplicate: the request was acknowledged without a task, because an equivalent task
	// already existed (see the identity strategies in docs/templates.md).
	Duplicate
	// DeadLettered: the request was moved to the dead-letter queue.
	DeadLettered
)

// Request is a submitted task request.
type Request struct {
	RequestID string // its request_id
	MsgID     int64  // the msg_id pgmq.send returned for it
}

// Outcome is what became of one request.
type Outcome struct {
	Kind Kind
	// Task is the task's row of tasker.task_status when Kind is Created; its State moves on
	// until the task is finished.
	Task workflow.TaskStatus
	// DeadLetter is the request's dead letter when Kind is DeadLettered.
	DeadLetter dlq.Letter
}

// Settled reports whether nothing more will happen to the request: its task is finished, or
// it was a duplicate or dead-lettered.
func (o Outcome) Settled() bool {
	return o.Kind == Duplicate || o.Kind == DeadLettered || o.Kind == Created && o.Task.Finished()
}

// DB runs a read-only transaction: a pool or a connection.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// requestsSQL finds, for each request, its oldest task and whether it is still queued.
const requestsSQL = `
	SELECT (SELECT t.task_uuid FROM tasker.workflow_tasks t WHERE t.request_id = r.request_id
	        ORDER BY t.created_at, t.task_uuid LIMIT 1),
	       EXISTS (SELECT 1 FROM pgmq.q_` + messages.QueueTaskRequests + ` q WHERE q.msg_id = r.msg_id)
	FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS r(request_id, msg_id, ord)
	ORDER BY r.ord`

// tasksSQL reads tasks from the public view, in the column order of workflow.TaskStatus.
const tasksSQL = `
	SELECT task_uuid, correlation_id, namespace, name, version, state,
	       steps_total, steps_complete, steps_error, created_at, completed_at
	FROM tasker.task_status WHERE task_uuid = ANY($1::uuid[])`

// Lookup returns what became of each request, in order. Dead letters are looked for above
// dlqAfter (a dlq.Watermark taken before the requests were sent, or 0 for the whole DLQ).
func Lookup(ctx context.Context, db DB, dlqAfter int64, reqs []Request) ([]Outcome, error) {
	out := make([]Outcome, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	requestIDs, msgIDs := make([]string, len(reqs)), make([]int64, len(reqs))
	for i, r := range reqs {
		requestIDs[i], msgIDs[i] = r.RequestID, r.MsgID
	}
	// Repeatable read: the queue, the tasks and the DLQ are read in one snapshot.
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, requestsSQL, requestIDs, msgIDs)
		if err != nil {
			return err
		}
		type found struct {
			TaskUUID *uuid.UUID
			Queued   bool
		}
		fs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[found])
		if err != nil {
			return err
		}
		var tasks []string // uuids as text: see the tasksSQL cast
		var gone []int64   // msg_ids of the requests neither queued nor turned into a task
		for i, f := range fs {
			switch {
			case f.TaskUUID != nil:
				out[i].Kind = Created
				tasks = append(tasks, f.TaskUUID.String())
			case f.Queued:
				out[i].Kind = Pending
			default:
				out[i].Kind = Duplicate
				gone = append(gone, reqs[i].MsgID)
			}
		}
		if rows, err = tx.Query(ctx, tasksSQL, tasks); err != nil {
			return err
		}
		statuses, err := pgx.CollectRows(rows, pgx.RowToStructByPos[workflow.TaskStatus])
		if err != nil {
			return err
		}
		byUUID := make(map[uuid.UUID]workflow.TaskStatus, len(statuses))
		for _, s := range statuses {
			byUUID[s.TaskUUID] = s
		}
		letters, err := dlq.FindBySource(ctx, tx, messages.QueueTaskRequests, gone, dlqAfter)
		if err != nil {
			return err
		}
		for i, f := range fs {
			switch l, ok := letters[reqs[i].MsgID]; {
			case out[i].Kind == Created:
				out[i].Task = byUUID[*f.TaskUUID]
			case out[i].Kind == Duplicate && ok:
				out[i] = Outcome{Kind: DeadLettered, DeadLetter: l}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up task requests: %w", err)
	}
	return out, nil
}

// Polling bounds of Wait: the first look comes soon after the request was sent, and the
// interval grows to PollMaxDefault while the request is unsettled.
const (
	PollMinDefault = 10 * time.Millisecond
	PollMaxDefault = 500 * time.Millisecond
)

// Wait looks up req until done reports true for its outcome, and returns that outcome; it
// waits with exponential backoff from PollMinDefault to PollMaxDefault between looks. done sees
// every outcome looked up, so a caller can report progress (the task was created) as it
// happens; Outcome.Settled is the usual choice. An error of a look or the end of ctx stops it.
func Wait(ctx context.Context, db DB, dlqAfter int64, req Request, done func(Outcome) bool) (Outcome, error) {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(PollMinDefault),
		backoff.WithMaxInterval(PollMaxDefault), backoff.WithMaxElapsedTime(0))
	for {
		got, err := Lookup(ctx, db, dlqAfter, []Request{req})
		if err != nil {
			return Outcome{}, err
		}
		if done(got[0]) {
			return got[0], nil
		}
		if err := timeutil.Sleep(ctx, b.NextBackOff()); err != nil {
			return got[0], fmt.Errorf("waiting for request %s: %w", req.RequestID, err)
		}
	}
}
