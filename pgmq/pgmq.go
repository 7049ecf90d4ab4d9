package pgmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/internal/timeutil"
)

// DB is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Message is one queue message (PGMQ's message_record, without the version-dependent
// last_read_at).
type Message struct {
	ID         int64
	ReadCount  int32     // times the message has been read or claimed, this delivery included
	EnqueuedAt time.Time // when it was sent
	VT         time.Time // visible again (to Read and other claims) from this time
	Body       json.RawMessage
	Headers    json.RawMessage // nil when the message was sent without headers
}

// QueueInfo describes a queue, as pgmq.list_queues reports it.
type QueueInfo struct {
	Name          string
	IsPartitioned bool
	IsUnlogged    bool
	CreatedAt     time.Time
}

// Metrics is a queue's pgmq.metrics row.
type Metrics struct {
	Queue         string
	Length        int64          // messages in the queue, visible or not
	NewestAge     *time.Duration // age of the newest message; nil when the queue is empty
	OldestAge     *time.Duration // age of the oldest message; nil when the queue is empty
	TotalMessages int64          // messages ever sent (the msg_id sequence)
	ScrapeTime    time.Time
	VisibleLength int64 // messages visible now
}

// SendOptions tunes Send and SendBatch.
type SendOptions struct {
	// Delay keeps the message invisible for this long (rounded up to whole seconds).
	// Delayed messages are not announced by the notify trigger.
	Delay time.Duration
	// Headers, when set, is stored as the message's headers (each message's, for SendBatch).
	Headers json.RawMessage
}

// MaxQueueNameLength is PGMQ's limit on queue names.
const MaxQueueNameLength = 47

// ErrInvalidQueueName is wrapped by the error of any call given a malformed queue name.
var ErrInvalidQueueName = errors.New("invalid queue name")

// ValidateQueueName reports whether name is a valid queue name: [a-z][a-z0-9_]*, at most 47
// characters. The error names the queue and wraps ErrInvalidQueueName.
func ValidateQueueName(name string) error {
	if reason := nameProblem(name); reason != "" {
		return fmt.Errorf("pgmq: %w %q: %s", ErrInvalidQueueName, name, reason)
	}
	return nil
}

func nameProblem(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > MaxQueueNameLength:
		return fmt.Sprintf("%d characters, at most %d allowed", len(name), MaxQueueNameLength)
	case name[0] < 'a' || name[0] > 'z':
		return "must start with a lower case letter"
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return "use only lower case letters, digits and _"
		}
	}
	return ""
}

// opError is the error of one operation on one queue (and message).
type opError struct {
	op      string
	queue   string // "" with noQueue for the operations on all queues
	noQueue bool
	msgID   string // "" when the operation is not about one message
	err     error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("pgmq: ")
	b.WriteString(e.op)
	if !e.noQueue {
		b.WriteByte(' ')
		if nameProblem(e.queue) != "" {
			b.WriteString(strconv.Quote(e.queue))
		} else {
			b.WriteString(e.queue)
		}
		if e.msgID != "" {
			b.WriteByte('/')
			b.WriteString(e.msgID)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.err.Error())
	return b.String()
}

func (e *opError) Unwrap() error { return e.err }

func fail(op, queue string, err error) error {
	return &opError{op: op, queue: queue, err: err}
}

func failAll(op string, err error) error {
	return &opError{op: op, noQueue: true, err: err}
}

func failMsg(op, queue string, msgID int64, err error) error {
	return &opError{op: op, queue: queue, msgID: strconv.FormatInt(msgID, 10), err: err}
}

func failBatch(op, queue string, n int, err error) error {
	return &opError{op: op, queue: queue, err: fmt.Errorf("%d messages: %w", n, err)}
}

// checkQueue returns the error for a malformed queue name, before any query.
func checkQueue(queue string) error {
	if reason := nameProblem(queue); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidQueueName, reason)
	}
	return nil
}

// Seconds converts d to PGMQ's whole seconds for delays and visibility timeouts, rounding up
// (1ms becomes 1s, never 0). A negative d, or one beyond PGMQ's integer seconds, is an error
// rather than silently clamped.
func Seconds(d time.Duration) (int32, error) {
	if d < 0 {
		return 0, fmt.Errorf("negative duration %v", d)
	}
	if d > math.MaxInt32*time.Second {
		return 0, fmt.Errorf("duration %v is too long", d)
	}
	return timeutil.CeilSeconds(d), nil
}

// seconds is Seconds with the error naming what the duration is for.
func seconds(what string, d time.Duration) (int32, error) {
	s, err := Seconds(d)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return s, nil
}

func checkBody(body json.RawMessage) error {
	if len(body) == 0 {
		return errors.New("empty message body")
	}
	return nil
}

// Create creates a queue (its q_ and a_ tables); creating an existing queue does nothing.
func Create(ctx context.Context, db DB, queue string) error {
	if err := checkQueue(queue); err != nil {
		return fail("create", queue, err)
	}
	if _, err := db.Exec(ctx, "SELECT pgmq.create($1::text)", queue); err != nil {
		return fail("create", queue, err)
	}
	return nil
}

// DropQueue drops a queue and its archive; false when PGMQ reports that the queue did not
// exist (older PGMQ versions raise an error instead).
func DropQueue(ctx context.Context, db DB, queue string) (bool, error) {
	if err := checkQueue(queue); err != nil {
		return false, fail("drop_queue", queue, err)
	}
	var dropped bool
	if err := db.QueryRow(ctx, "SELECT pgmq.drop_queue($1::text)", queue).Scan(&dropped); err != nil {
		return false, fail("drop_queue", queue, err)
	}
	return dropped, nil
}

// PurgeQueue deletes every message of a queue (not its archive) and returns how many.
func PurgeQueue(ctx context.Context, db DB, queue string) (int64, error) {
	if err := checkQueue(queue); err != nil {
		return 0, fail("purge_queue", queue, err)
	}
	var n int64
	if err := db.QueryRow(ctx, "SELECT pgmq.purge_queue($1::text)", queue).Scan(&n); err != nil {
		return 0, fail("purge_queue", queue, err)
	}
	return n, nil
}

// ListQueues lists the queues.
func ListQueues(ctx context.Context, db DB) ([]QueueInfo, error) {
	rows, err := db.Query(ctx,
		"SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues()")
	if err != nil {
		return nil, failAll("list_queues", err)
	}
	qs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (QueueInfo, error) {
		var q QueueInfo
		err := row.Scan(&q.Name, &q.IsPartitioned, &q.IsUnlogged, &q.CreatedAt)
		return q, err
	})
	if err != nil {
		return nil, failAll("list_queues", err)
	}
	return qs, nil
}

// Send enqueues one message and returns its id.
func Send(ctx context.Context, db DB, queue string, body json.RawMessage, opts SendOptions) (int64, error) {
	if err := checkQueue(queue); err != nil {
		return 0, fail("send", queue, err)
	}
	if err := checkBody(body); err != nil {
		return 0, fail("send", queue, err)
	}
	delay, err := seconds("delay", opts.Delay)
	if err != nil {
		return 0, fail("send", queue, err)
	}
	var row pgx.Row
	if len(opts.Headers) == 0 {
		row = db.QueryRow(ctx, "SELECT pgmq.send($1::text, $2::jsonb, $3::integer)", queue, body, delay)
	} else {
		row = db.QueryRow(ctx, "SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::integer)",
			queue, body, opts.Headers, delay)
	}
	var id int64
	if err := row.Scan(&id); err != nil {
		return 0, fail("send", queue, err)
	}
	return id, nil
}

// SendBatch enqueues messages in one statement and returns their ids, in the order of bodies.
// opts.Headers, if set, applies to each message. An empty batch sends nothing.
func SendBatch(ctx context.Context, db DB, queue string, bodies []json.RawMessage, opts SendOptions) ([]int64, error) {
	if err := checkQueue(queue); err != nil {
		return nil, fail("send_batch", queue, err)
	}
	for i, b := range bodies {
		if err := checkBody(b); err != nil {
			return nil, fail("send_batch", queue, fmt.Errorf("message %d: %w", i, err))
		}
	}
	delay, err := seconds("delay", opts.Delay)
	if err != nil {
		return nil, fail("send_batch", queue, err)
	}
	if len(bodies) == 0 {
		return nil, nil
	}
	var rows pgx.Rows
	if len(opts.Headers) == 0 {
		rows, err = db.Query(ctx,
			"SELECT id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer) AS s(id)",
			queue, bodies, delay)
	} else {
		headers := make([]json.RawMessage, len(bodies))
		for i := range headers {
			headers[i] = opts.Headers
		}
		rows, err = db.Query(ctx,
			"SELECT id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer) AS s(id)",
			queue, bodies, headers, delay)
	}
	if err != nil {
		return nil, failBatch("send_batch", queue, len(bodies), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, failBatch("send_batch", queue, len(bodies), err)
	}
	return ids, nil
}

// MessageColumns are the columns of PGMQ's message_record that Message holds, in ScanMessage's
// order. With ScanMessage they serve queries of functions returning PGMQ messages that this
// package does not wrap, such as the extensions in package tasker.
const MessageColumns = "msg_id, read_ct, enqueued_at, vt, message, headers"

// ScanMessage scans a row of MessageColumns; it fits pgx.CollectRows.
func ScanMessage(row pgx.CollectableRow) (Message, error) {
	var m Message
	err := row.Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.VT, &m.Body, &m.Headers)
	return m, err
}

// Read claims up to qty visible messages, oldest first, and hides them for vt. Concurrent
// readers never get the same message and never wait for each other (SKIP LOCKED). qty 0
// reads nothing.
func Read(ctx context.Context, db DB, queue string, vt time.Duration, qty int) ([]Message, error) {
	if err := checkQueue(queue); err != nil {
		return nil, fail("read", queue, err)
	}
	secs, err := seconds("visibility timeout", vt)
	if err != nil {
		return nil, fail("read", queue, err)
	}
	if qty < 0 || qty > math.MaxInt32 {
		return nil, fail("read", queue, fmt.Errorf("invalid quantity %d", qty))
	}
	if qty == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx,
		"SELECT "+MessageColumns+" FROM pgmq.read($1::text, $2::integer, $3::integer)",
		queue, secs, int32(qty))
	if err != nil {
		return nil, fail("read", queue, err)
	}
	msgs, err := pgx.CollectRows(rows, ScanMessage)
	if err != nil {
		return nil, fail("read", queue, err)
	}
	return msgs, nil
}

// Delete deletes a message; false when there was no such message.
func Delete(ctx context.Context, db DB, queue string, msgID int64) (bool, error) {
	if err := checkQueue(queue); err != nil {
		return false, failMsg("delete", queue, msgID, err)
	}
	var ok bool
	if err := db.QueryRow(ctx, "SELECT pgmq.delete($1::text, $2::bigint)", queue, msgID).Scan(&ok); err != nil {
		return false, failMsg("delete", queue, msgID, err)
	}
	return ok, nil
}

// DeleteBatch deletes messages in one statement and returns the ids it deleted.
func DeleteBatch(ctx context.Context, db DB, queue string, msgIDs []int64) ([]int64, error) {
	return batchIDs(ctx, db, "delete_batch", "SELECT id FROM pgmq.delete($1::text, $2::bigint[]) AS d(id)", queue, msgIDs)
}

// Archive moves a message to the queue's archive table (pgmq.a_<queue>); false when there was
// no such message.
func Archive(ctx context.Context, db DB, queue string, msgID int64) (bool, error) {
	if err := checkQueue(queue); err != nil {
		return false, failMsg("archive", queue, msgID, err)
	}
	var ok bool
	if err := db.QueryRow(ctx, "SELECT pgmq.archive($1::text, $2::bigint)", queue, msgID).Scan(&ok); err != nil {
		return false, failMsg("archive", queue, msgID, err)
	}
	return ok, nil
}

// ArchiveBatch archives messages in one statement and returns the ids it archived.
func ArchiveBatch(ctx context.Context, db DB, queue string, msgIDs []int64) ([]int64, error) {
	return batchIDs(ctx, db, "archive_batch", "SELECT id FROM pgmq.archive($1::text, $2::bigint[]) AS a(id)", queue, msgIDs)
}

func batchIDs(ctx context.Context, db DB, op, sql, queue string, msgIDs []int64) ([]int64, error) {
	if err := checkQueue(queue); err != nil {
		return nil, fail(op, queue, err)
	}
	if len(msgIDs) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, sql, queue, msgIDs)
	if err != nil {
		return nil, failBatch(op, queue, len(msgIDs), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, failBatch(op, queue, len(msgIDs), err)
	}
	return ids, nil
}

// SetVT makes a message invisible until vt from now (a heartbeat for long work, or a retry
// delay); false when there is no such message.
func SetVT(ctx context.Context, db DB, queue string, msgID int64, vt time.Duration) (Message, bool, error) {
	if err := checkQueue(queue); err != nil {
		return Message{}, false, failMsg("set_vt", queue, msgID, err)
	}
	secs, err := seconds("visibility timeout", vt)
	if err != nil {
		return Message{}, false, failMsg("set_vt", queue, msgID, err)
	}
	rows, err := db.Query(ctx,
		"SELECT "+MessageColumns+" FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)",
		queue, msgID, secs)
	if err != nil {
		return Message{}, false, failMsg("set_vt", queue, msgID, err)
	}
	msgs, err := pgx.CollectRows(rows, ScanMessage)
	if err != nil {
		return Message{}, false, failMsg("set_vt", queue, msgID, err)
	}
	if len(msgs) == 0 {
		return Message{}, false, nil
	}
	return msgs[0], true, nil
}

const metricsColumns = "queue_name::text, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time, queue_visible_length"

func scanMetrics(row pgx.CollectableRow) (Metrics, error) {
	var (
		m              Metrics
		newest, oldest *int32
	)
	if err := row.Scan(&m.Queue, &m.Length, &newest, &oldest, &m.TotalMessages, &m.ScrapeTime, &m.VisibleLength); err != nil {
		return Metrics{}, err
	}
	m.NewestAge, m.OldestAge = age(newest), age(oldest)
	return m, nil
}

func age(secs *int32) *time.Duration {
	if secs == nil {
		return nil
	}
	d := time.Duration(*secs) * time.Second
	return &d
}

// QueueMetrics returns a queue's metrics (pgmq.metrics).
func QueueMetrics(ctx context.Context, db DB, queue string) (Metrics, error) {
	if err := checkQueue(queue); err != nil {
		return Metrics{}, fail("metrics", queue, err)
	}
	rows, err := db.Query(ctx, "SELECT "+metricsColumns+" FROM pgmq.metrics($1::text)", queue)
	if err != nil {
		return Metrics{}, fail("metrics", queue, err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMetrics)
	if err != nil {
		return Metrics{}, fail("metrics", queue, err)
	}
	return m, nil
}

// MetricsAll returns the metrics of every queue (pgmq.metrics_all).
func MetricsAll(ctx context.Context, db DB) ([]Metrics, error) {
	rows, err := db.Query(ctx, "SELECT "+metricsColumns+" FROM pgmq.metrics_all()")
	if err != nil {
		return nil, failAll("metrics_all", err)
	}
	ms, err := pgx.CollectRows(rows, scanMetrics)
	if err != nil {
		return nil, failAll("metrics_all", err)
	}
	return ms, nil
}
