package tasker

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/pgmq"
)

// VisibilityTimeoutDefault is how long a claimed message stays hidden from other readers when
// the reader configures nothing (the consumer's CONSUMER_VISIBILITY_TIMEOUT, the worker SDK's
// VisibilityTimeout): long enough for a handler to finish, short enough that the messages of a
// reader that died come back soon.
const VisibilityTimeoutDefault = 30 * time.Second

const (
	readSpecificSQL = "SELECT " + pgmq.MessageColumns +
		" FROM tasker.pgmq_read_specific_message($1::text, $2::bigint, $3::integer)"
	readSpecificBatchSQL = "SELECT " + pgmq.MessageColumns +
		" FROM tasker.pgmq_read_specific_messages($1::text, $2::bigint[], $3::integer) ORDER BY msg_id"
)

// ReadSpecific claims one message by id, hiding it for vt, only if it is visible now and no
// other transaction holds it. false means it is not claimable now (claimed, deleted, not yet
// visible or unknown): a normal race outcome, not an error.
func ReadSpecific(ctx context.Context, db pgmq.DB, queue string, msgID int64, vt time.Duration) (pgmq.Message, bool, error) {
	fail := func(err error) (pgmq.Message, bool, error) {
		return pgmq.Message{}, false, fmt.Errorf("tasker: read_specific %s/%d: %w", queue, msgID, err)
	}
	secs, err := claimArgs("read_specific", queue, vt)
	if err != nil {
		return pgmq.Message{}, false, err
	}
	rows, err := db.Query(ctx, readSpecificSQL, queue, msgID, secs)
	if err != nil {
		return fail(err)
	}
	msgs, err := pgx.CollectRows(rows, pgmq.ScanMessage)
	if err != nil {
		return fail(err)
	}
	if len(msgs) == 0 {
		return pgmq.Message{}, false, nil
	}
	return msgs[0], true, nil
}

// ReadSpecificBatch claims whichever of msgIDs are claimable now (see ReadSpecific), in one
// statement, and returns them in id order.
func ReadSpecificBatch(ctx context.Context, db pgmq.DB, queue string, msgIDs []int64, vt time.Duration) ([]pgmq.Message, error) {
	secs, err := claimArgs("read_specific_batch", queue, vt)
	if err != nil {
		return nil, err
	}
	if len(msgIDs) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, readSpecificBatchSQL, queue, msgIDs, secs)
	if err != nil {
		return nil, failBatch(queue, len(msgIDs), err)
	}
	msgs, err := pgx.CollectRows(rows, pgmq.ScanMessage)
	if err != nil {
		return nil, failBatch(queue, len(msgIDs), err)
	}
	return msgs, nil
}

// QueueReadSpecificBatch adds ReadSpecificBatch to b, so that the claim can share a round trip
// with the statements around it; the claimed messages are stored in *out when b's results are
// read (a failure is returned then, naming the queue).
func QueueReadSpecificBatch(b *pgx.Batch, queue string, msgIDs []int64, vt time.Duration, out *[]pgmq.Message) error {
	secs, err := claimArgs("read_specific_batch", queue, vt)
	if err != nil {
		return err
	}
	b.Queue(readSpecificBatchSQL, queue, msgIDs, secs).Query(func(rows pgx.Rows) error {
		msgs, err := pgx.CollectRows(rows, pgmq.ScanMessage)
		if err != nil {
			return failBatch(queue, len(msgIDs), err)
		}
		*out = msgs
		return nil
	})
	return nil
}

// claimArgs checks a claim's queue name (the error then names it) and converts its visibility
// timeout, before any query.
func claimArgs(op, queue string, vt time.Duration) (int32, error) {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return 0, fmt.Errorf("tasker: %s: %w", op, err)
	}
	secs, err := pgmq.Seconds(vt)
	if err != nil {
		return 0, fmt.Errorf("tasker: %s %s: visibility timeout: %w", op, queue, err)
	}
	return secs, nil
}

func failBatch(queue string, n int, err error) error {
	return fmt.Errorf("tasker: read_specific_batch %s: %d messages: %w", queue, n, err)
}
