package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

// readyEvent is the JSON payload of the queue notify trigger (see docs/protocol.md).
type readyEvent struct {
	EventType string  `json:"event_type"`
	QueueName string  `json:"queue_name"`
	MsgID     *int64  `json:"msg_id"`
	MsgIDs    []int64 `json:"msg_ids"`
}

const sentinel = "sentinel"

// listen opens a dedicated connection listening on channel.
func listen(t *testing.T, ctx context.Context, db *testdb.DB, channel string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// next waits (up to 10s) for the next notification on conn.
func next(t *testing.T, ctx context.Context, conn *pgx.Conn) *pgconn.Notification {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("waiting for a notification: %v", err)
	}
	return n
}

// nextEvent waits for the next notification and parses it as a ready event on channel.
func nextEvent(t *testing.T, ctx context.Context, conn *pgx.Conn, channel string) readyEvent {
	t.Helper()
	n := next(t, ctx, conn)
	if n.Channel != channel {
		t.Fatalf("notification on %q, want %q", n.Channel, channel)
	}
	var ev readyEvent
	if err := json.Unmarshal([]byte(n.Payload), &ev); err != nil {
		t.Fatalf("payload %q is not a ready event: %v", n.Payload, err)
	}
	if len(n.Payload) >= 8000 {
		t.Fatalf("payload of %d bytes", len(n.Payload))
	}
	return ev
}

// expectNoMore asserts that nothing but a sentinel, notified now from another transaction,
// arrives next: notifications are delivered in commit order, so anything still pending from
// earlier commits would come first. No sleeping involved.
func expectNoMore(t *testing.T, ctx context.Context, db *testdb.DB, conn *pgx.Conn, channel string) {
	t.Helper()
	if _, err := db.Pool.Exec(ctx, "SELECT pg_notify($1::text, $2::text)", channel, sentinel); err != nil {
		t.Fatal(err)
	}
	if n := next(t, ctx, conn); n.Payload != sentinel {
		t.Fatalf("unexpected notification %q on %q", n.Payload, n.Channel)
	}
}

func assertMessageReady(t *testing.T, ev readyEvent, queue string, id int64) {
	t.Helper()
	if ev.EventType != "message_ready" || ev.QueueName != queue || ev.MsgID == nil || *ev.MsgID != id || ev.MsgIDs != nil {
		t.Fatalf("event %+v, want message_ready %s/%d", ev, queue, id)
	}
}

func notifySetup(t *testing.T) (context.Context, *testdb.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, testdb.New(t, 4)
}

func TestNotifyMessageReady(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "orchestration_task_requests"
	conn := listen(t, ctx, db, tasker.OrchestrationChannel)
	id := pgmqtest.Send(t, ctx, db.Pool, queue, `{"task":"x"}`)
	assertMessageReady(t, nextEvent(t, ctx, conn, tasker.OrchestrationChannel), queue, id)
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)

	// The other orchestration queues share the channel.
	id = pgmqtest.Send(t, ctx, db.Pool, "orchestration_step_results", `{}`)
	assertMessageReady(t, nextEvent(t, ctx, conn, tasker.OrchestrationChannel), "orchestration_step_results", id)
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
}

func TestNotifyOnlyAfterCommit(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "orchestration_step_results"
	conn := listen(t, ctx, db, tasker.OrchestrationChannel)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	id := pgmqtest.Send(t, ctx, tx, queue, `{}`)
	// While tx is open its notification is pending: the sentinel, committed after the send
	// but before tx, must arrive first.
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	assertMessageReady(t, nextEvent(t, ctx, conn, tasker.OrchestrationChannel), queue, id)
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)

	// A rolled-back send is never announced.
	tx, err = db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgmqtest.Send(t, ctx, tx, queue, `{}`)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
}

func TestNotifyBatchReady(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "orchestration_task_finalizations"
	conn := listen(t, ctx, db, tasker.OrchestrationChannel)
	sent, err := pgmq.SendBatch(ctx, db.Pool, queue, []json.RawMessage{body(`{"n":1}`), body(`{"n":2}`), body(`{"n":3}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ctx, conn, tasker.OrchestrationChannel)
	if ev.EventType != "batch_ready" || ev.QueueName != queue || ev.MsgID != nil || !slices.Equal(pgmqtest.Sorted(ev.MsgIDs), pgmqtest.Sorted(sent)) {
		t.Fatalf("event %+v, want batch_ready %s %v", ev, queue, sent)
	}
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
}

func TestNotifyQueueReadyWhenIDsDoNotFit(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "orchestration_task_requests"
	conn := listen(t, ctx, db, tasker.OrchestrationChannel)
	// Ids 1..2000 take 8892 bytes as a JSON array (6893 digits, 1999 commas): over the limit.
	bodies := make([]json.RawMessage, 2000)
	for i := range bodies {
		bodies[i] = body(`{}`)
	}
	sent, err := pgmq.SendBatch(ctx, db.Pool, queue, bodies, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != len(bodies) {
		t.Fatalf("sent %d", len(sent))
	}
	ev := nextEvent(t, ctx, conn, tasker.OrchestrationChannel)
	if ev.EventType != "queue_ready" || ev.QueueName != queue || ev.MsgID != nil || ev.MsgIDs != nil {
		t.Fatalf("event %+v, want queue_ready %s", ev, queue)
	}
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
}

func TestNotifyDelayedNotAnnounced(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "orchestration_task_requests"
	conn := listen(t, ctx, db, tasker.OrchestrationChannel)
	if _, err := pgmq.Send(ctx, db.Pool, queue, body(`{"later":true}`), pgmq.SendOptions{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.SendBatch(ctx, db.Pool, queue, []json.RawMessage{body(`{}`), body(`{}`)}, pgmq.SendOptions{Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	id := pgmqtest.Send(t, ctx, db.Pool, queue, `{"now":true}`)
	assertMessageReady(t, nextEvent(t, ctx, conn, tasker.OrchestrationChannel), queue, id)
	expectNoMore(t, ctx, db, conn, tasker.OrchestrationChannel)
}

func TestNotifyWorkerQueue(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "worker_demo_queue"
	channel := tasker.NotifyChannel(queue)
	if channel != "pgmq_message_ready.demo" {
		t.Fatalf("NotifyChannel(%s) = %s", queue, channel)
	}
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	// Enabling twice is harmless: still one notification per statement.
	for range 2 {
		if err := tasker.EnableNotify(ctx, db.Pool, queue); err != nil {
			t.Fatal(err)
		}
	}
	conn := listen(t, ctx, db, channel)
	id := pgmqtest.Send(t, ctx, db.Pool, queue, `{"step":"s"}`)
	assertMessageReady(t, nextEvent(t, ctx, conn, channel), queue, id)
	expectNoMore(t, ctx, db, conn, channel)
}

// A queue without EnableNotify is not announced.
func TestNoNotifyWithoutEnable(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "worker_quiet_queue"
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	conn := listen(t, ctx, db, tasker.NotifyChannel(queue))
	pgmqtest.Send(t, ctx, db.Pool, queue, `{}`)
	expectNoMore(t, ctx, db, conn, tasker.NotifyChannel(queue))
}

func TestNotifyChannelMatchesSQL(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	names := []string{
		"orchestration_task_requests", "orchestration_step_results", "orchestration_dlq", "orchestration_",
		"orchestration", "orchestrationx", "worker_demo_queue", "worker_a_queue", "worker_a_queue_queue",
		"worker_x1_y2_queue", "worker__queue", "worker_queue", "worker_1x_queue", "worker_demo_queue_2",
		"jobs", "worker_demo", "demo_queue",
	}
	for _, name := range names {
		var want string
		if err := db.Pool.QueryRow(ctx, "SELECT tasker.queue_notify_channel($1::text)", name).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := tasker.NotifyChannel(name); got != want {
			t.Errorf("NotifyChannel(%q) = %q, SQL says %q", name, got, want)
		}
	}
	if got := tasker.NotifyChannel("orchestration_task_requests"); got != tasker.OrchestrationChannel {
		t.Errorf("orchestration channel %q", got)
	}
}

// PostgreSQL refuses NOTIFY channel names over 63 bytes, so notifications on a queue whose
// channel is longer would make every send fail: EnableNotify refuses such queues up front.
func TestEnableNotifyRejectsOverlongChannel(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	queue := strings.Repeat("q", 45) // pgmq_message_ready. + 45 = 64 bytes
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	err := tasker.EnableNotify(ctx, db.Pool, queue)
	if err == nil || !strings.Contains(err.Error(), "tasker: enable_notify "+queue+": ") {
		t.Fatalf("EnableNotify(%s) = %v, want an error", queue, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		t.Fatalf("EnableNotify reached the database: %v", err)
	}
	// The queue still works.
	if _, err := pgmq.Send(ctx, db.Pool, queue, body(`{}`), pgmq.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	// 44 characters fit exactly.
	ok := strings.Repeat("q", 44)
	if err := pgmq.Create(ctx, db.Pool, ok); err != nil {
		t.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, db.Pool, ok); err != nil {
		t.Fatal(err)
	}
	conn := listen(t, ctx, db, tasker.NotifyChannel(ok))
	id := pgmqtest.Send(t, ctx, db.Pool, ok, `{}`)
	assertMessageReady(t, nextEvent(t, ctx, conn, tasker.NotifyChannel(ok)), ok, id)
	if n := len(tasker.NotifyChannel(ok)); n != 63 {
		t.Fatalf("channel length %d", n)
	}
}
