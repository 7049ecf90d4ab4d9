package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// Queue is the dead-letter queue.
const Queue = messages.QueueDLQ

// The DLQ's tables: its messages and the archive PGMQ moves archived ones to.
const (
	queueTable   = "pgmq.q_" + Queue
	archiveTable = "pgmq.a_" + Queue
)

// ErrNotFound is wrapped by Replay when there is no dead letter with the given msg_id.
var ErrNotFound = errors.New("dead letter not found")

// Letter is one dead letter.
type Letter struct {
	MsgID      int64     // its msg_id in orchestration_dlq
	EnqueuedAt time.Time // when it was dead-lettered
	Archived   bool      // read from the DLQ's archive rather than the queue
	Raw        json.RawMessage
	// DeadLetter is Raw decoded. A body that is not a dead letter (sent to the DLQ by hand,
	// say) leaves the fields it lacks zero.
	messages.DeadLetter
}

// ListOptions select the dead letters List returns.
type ListOptions struct {
	// Limit is the most dead letters returned, oldest first. If set to 0, all are returned.
	Limit int
	// Archived also returns the dead letters that were archived.
	Archived bool
}

// List returns dead letters, oldest (lowest msg_id) first, without claiming them.
func List(ctx context.Context, db pgmq.DB, opts ListOptions) ([]Letter, error) {
	sql := "SELECT msg_id, enqueued_at, false, message FROM " + queueTable
	if opts.Archived {
		sql += " UNION ALL SELECT msg_id, enqueued_at, true, message FROM " + archiveTable
	}
	sql += " ORDER BY 1"
	var args []any
	if opts.Limit > 0 {
		sql += " LIMIT $1"
		args = append(args, opts.Limit)
	}
	letters, err := query(ctx, db, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return letters, nil
}

// Watermark returns the highest msg_id in the DLQ and its archive (0 when both are empty). A
// message dead-lettered afterwards gets a higher one; see FindBySource.
func Watermark(ctx context.Context, db pgmq.DB) (int64, error) {
	var w int64
	err := db.QueryRow(ctx, `SELECT coalesce(greatest((SELECT max(msg_id) FROM `+queueTable+`),
		(SELECT max(msg_id) FROM `+archiveTable+`)), 0)`).Scan(&w)
	if err != nil {
		return 0, fmt.Errorf("dead-letter watermark: %w", err)
	}
	return w, nil
}

// FindBySource returns the dead letters of the given messages of sourceQueue, by source
// msg_id (a message dead-lettered more than once maps to its first dead letter). Only dead
// letters above the watermark after are read, queued or archived: pass the Watermark taken
// before the messages were sent, or 0 to search the whole DLQ.
func FindBySource(ctx context.Context, db pgmq.DB, sourceQueue string, msgIDs []int64, after int64) (map[int64]Letter, error) {
	out := make(map[int64]Letter)
	if len(msgIDs) == 0 {
		return out, nil
	}
	// Compared as text: a hand-made dead letter whose source_msg_id is not a number must not
	// fail the query for everyone.
	ids := make([]string, len(msgIDs))
	for i, id := range msgIDs {
		ids[i] = strconv.FormatInt(id, 10)
	}
	const where = ` WHERE msg_id > $1 AND message->>'source_queue' = $2 AND message->>'source_msg_id' = ANY($3::text[])`
	letters, err := query(ctx, db, "SELECT msg_id, enqueued_at, false, message FROM "+queueTable+where+
		" UNION ALL SELECT msg_id, enqueued_at, true, message FROM "+archiveTable+where+" ORDER BY 1",
		after, sourceQueue, ids)
	if err != nil {
		return nil, fmt.Errorf("find dead letters of %s: %w", sourceQueue, err)
	}
	for _, l := range letters {
		if _, seen := out[l.SourceMsgID]; !seen {
			out[l.SourceMsgID] = l
		}
	}
	return out, nil
}

func query(ctx context.Context, db pgmq.DB, sql string, args ...any) ([]Letter, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Letter, error) {
		var l Letter
		if err := row.Scan(&l.MsgID, &l.EnqueuedAt, &l.Archived, &l.Raw); err != nil {
			return l, err
		}
		_ = json.Unmarshal(l.Raw, &l.DeadLetter) // see Letter.DeadLetter
		return l, nil
	})
}

// Replayed is the result of a replay.
type Replayed struct {
	DeadLetter int64  // the msg_id the dead letter had in the DLQ
	Queue      string // its source queue
	MsgID      int64  // the msg_id of the original body, sent again to Queue
}

// Beginner starts a transaction: a pool, a connection or a transaction (which then uses a
// savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Replay sends the original body of dead letter id back to its source queue and deletes the
// dead letter, in one transaction. A dead letter that does not exist is an error wrapping
// ErrNotFound; one without a source queue or a body cannot be replayed.
func Replay(ctx context.Context, db Beginner, id int64) (Replayed, error) {
	r := Replayed{DeadLetter: id}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var body []byte
		err := tx.QueryRow(ctx, "SELECT message FROM "+queueTable+" WHERE msg_id = $1 FOR UPDATE", id).Scan(&body)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: msg_id %d", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("read dead letter %d: %w", id, err)
		}
		var d messages.DeadLetter
		if err := json.Unmarshal(body, &d); err != nil || d.SourceQueue == "" || len(d.Message) == 0 {
			return fmt.Errorf("dead letter %d has no source queue or message to replay", id)
		}
		r.Queue = d.SourceQueue
		if r.MsgID, err = pgmq.Send(ctx, tx, d.SourceQueue, d.Message, pgmq.SendOptions{}); err != nil {
			return fmt.Errorf("replay dead letter %d: %w", id, err)
		}
		if _, err := pgmq.Delete(ctx, tx, Queue, id); err != nil {
			return fmt.Errorf("replay dead letter %d: %w", id, err)
		}
		return nil
	})
	return r, err
}
