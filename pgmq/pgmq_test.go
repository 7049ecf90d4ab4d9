package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/pgmq"
)

// The three kinds of handle the package is meant to run on.
var (
	_ pgmq.DB = (*pgxpool.Pool)(nil)
	_ pgmq.DB = (*pgx.Conn)(nil)
	_ pgmq.DB = pgx.Tx(nil)
)

const testQueue = "jobs"

func body(s string) json.RawMessage { return json.RawMessage(s) }

// failingDB fails the test on any query: for arguments that must be rejected client-side.
type failingDB struct{ t *testing.T }

var errUnexpectedQuery = errors.New("unexpected query")

func (d failingDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	d.t.Error("unexpected Exec")
	return pgconn.CommandTag{}, errUnexpectedQuery
}

func (d failingDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	d.t.Error("unexpected Query")
	return nil, errUnexpectedQuery
}

func (d failingDB) QueryRow(context.Context, string, ...any) pgx.Row {
	d.t.Error("unexpected QueryRow")
	return errRow{}
}

type errRow struct{}

func (errRow) Scan(...any) error { return errUnexpectedQuery }

// countingDB counts statements sent through it.
type countingDB struct {
	pgmq.DB
	n atomic.Int64
}

func (d *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	d.n.Add(1)
	return d.DB.Exec(ctx, sql, args...)
}

func (d *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	d.n.Add(1)
	return d.DB.Query(ctx, sql, args...)
}

func (d *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	d.n.Add(1)
	return d.DB.QueryRow(ctx, sql, args...)
}

func TestValidateQueueName(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "jobs", "orchestration_step_results", "worker_demo_queue", "q1_2", strings.Repeat("a", 47)}
	for _, name := range valid {
		if err := pgmq.ValidateQueueName(name); err != nil {
			t.Errorf("ValidateQueueName(%q) = %v, want nil", name, err)
		}
	}
	invalid := []string{"", "Bad-Name", "x; drop table", "Jobs", "1jobs", "_jobs", "jobs-1", "jobs.x", "jöbs", "a b", strings.Repeat("a", 48)}
	for _, name := range invalid {
		err := pgmq.ValidateQueueName(name)
		if err == nil {
			t.Errorf("ValidateQueueName(%q) = nil, want an error", name)
			continue
		}
		if !errors.Is(err, pgmq.ErrInvalidQueueName) {
			t.Errorf("ValidateQueueName(%q) = %v, does not wrap ErrInvalidQueueName", name, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("ValidateQueueName(%q) = %v, does not name the queue", name, err)
		}
	}
}

// Bad arguments are rejected before any query, with an error naming the operation and queue.
func TestBadArgumentsNeverReachTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := failingDB{t}
	ok := body(`{}`)
	for _, queue := range []string{"Bad-Name", "x; drop table", ""} {
		calls := map[string]func() error{
			"create":      func() error { return pgmq.Create(ctx, db, queue) },
			"drop_queue":  func() error { _, err := pgmq.DropQueue(ctx, db, queue); return err },
			"purge_queue": func() error { _, err := pgmq.PurgeQueue(ctx, db, queue); return err },
			"send":        func() error { _, err := pgmq.Send(ctx, db, queue, ok, pgmq.SendOptions{}); return err },
			"send_batch": func() error {
				_, err := pgmq.SendBatch(ctx, db, queue, []json.RawMessage{ok}, pgmq.SendOptions{})
				return err
			},
			"read":          func() error { _, err := pgmq.Read(ctx, db, queue, time.Second, 1); return err },
			"delete":        func() error { _, err := pgmq.Delete(ctx, db, queue, 1); return err },
			"delete_batch":  func() error { _, err := pgmq.DeleteBatch(ctx, db, queue, []int64{1}); return err },
			"archive":       func() error { _, err := pgmq.Archive(ctx, db, queue, 1); return err },
			"archive_batch": func() error { _, err := pgmq.ArchiveBatch(ctx, db, queue, []int64{1}); return err },
			"set_vt":        func() error { _, _, err := pgmq.SetVT(ctx, db, queue, 1, time.Second); return err },
			"metrics":       func() error { _, err := pgmq.QueueMetrics(ctx, db, queue); return err },
		}
		for op, call := range calls {
			err := call()
			if !errors.Is(err, pgmq.ErrInvalidQueueName) {
				t.Errorf("%s(%q) = %v, want ErrInvalidQueueName", op, queue, err)
				continue
			}
			if want := "pgmq: " + op + " "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s(%q) = %q, want prefix %q", op, queue, err, want)
			}
			if queue != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", queue)) {
				t.Errorf("%s(%q) = %q, does not name the queue", op, queue, err)
			}
		}
	}

	bad := map[string]func() error{
		"negative read vt": func() error { _, err := pgmq.Read(ctx, db, testQueue, -time.Second, 1); return err },
		"negative qty":     func() error { _, err := pgmq.Read(ctx, db, testQueue, time.Second, -1); return err },
		"negative delay": func() error {
			_, err := pgmq.Send(ctx, db, testQueue, ok, pgmq.SendOptions{Delay: -time.Millisecond})
			return err
		},
		"negative batch delay": func() error {
			_, err := pgmq.SendBatch(ctx, db, testQueue, []json.RawMessage{ok}, pgmq.SendOptions{Delay: -time.Second})
			return err
		},
		"huge delay": func() error {
			_, err := pgmq.Send(ctx, db, testQueue, ok, pgmq.SendOptions{Delay: 100 * 365 * 24 * time.Hour})
			return err
		},
		"empty body": func() error { _, err := pgmq.Send(ctx, db, testQueue, nil, pgmq.SendOptions{}); return err },
		"empty batch body": func() error {
			_, err := pgmq.SendBatch(ctx, db, testQueue, []json.RawMessage{ok, {}}, pgmq.SendOptions{})
			return err
		},
		"negative set_vt": func() error { _, _, err := pgmq.SetVT(ctx, db, testQueue, 7, -time.Second); return err },
	}
	for name, call := range bad {
		err := call()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "pgmq: ") || !strings.Contains(err.Error(), " "+testQueue) {
			t.Errorf("%s: error %q does not name the queue", name, err)
		}
	}

	// Empty batches and a zero quantity are no-ops that need no round trip.
	if msgs, err := pgmq.Read(ctx, db, testQueue, time.Second, 0); err != nil || len(msgs) != 0 {
		t.Errorf("Read qty 0 = %v, %v", msgs, err)
	}
	if got, err := pgmq.SendBatch(ctx, db, testQueue, nil, pgmq.SendOptions{}); err != nil || len(got) != 0 {
		t.Errorf("SendBatch(nil) = %v, %v", got, err)
	}
	if got, err := pgmq.DeleteBatch(ctx, db, testQueue, nil); err != nil || len(got) != 0 {
		t.Errorf("DeleteBatch(nil) = %v, %v", got, err)
	}
	if got, err := pgmq.ArchiveBatch(ctx, db, testQueue, nil); err != nil || len(got) != 0 {
		t.Errorf("ArchiveBatch(nil) = %v, %v", got, err)
	}
}

func TestErrorNamesOperationQueueAndMessage(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	_, err := pgmq.Delete(ctx, db.Pool, "no_such_queue", 42)
	if err == nil {
		t.Fatal("delete on a missing queue: no error")
	}
	if want := "pgmq: delete no_such_queue/42: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want prefix %q", err, want)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("error %v does not wrap a *pgconn.PgError", err)
	}
	_, err = pgmq.DeleteBatch(ctx, db.Pool, "no_such_queue", []int64{1, 2})
	if want := "pgmq: delete_batch no_such_queue: 2 messages: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want prefix %q", err, want)
	}
}

func TestQueueLifecycle(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	// Creating an existing queue is a no-op.
	if err := pgmq.Create(ctx, db.Pool, testQueue); err != nil {
		t.Fatalf("second create: %v", err)
	}
	qs, err := pgmq.ListQueues(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]pgmq.QueueInfo{}
	for _, q := range qs {
		names[q.Name] = q
	}
	for _, want := range []string{testQueue, "orchestration_task_requests", "orchestration_step_results", "orchestration_task_finalizations", "orchestration_dlq"} {
		if _, ok := names[want]; !ok {
			t.Errorf("ListQueues lacks %s: %v", want, qs)
		}
	}
	if q := names[testQueue]; q.IsPartitioned || q.IsUnlogged || q.CreatedAt.IsZero() {
		t.Errorf("queue info = %+v", q)
	}

	for i := range 3 {
		pgmqtest.Send(t, ctx, db.Pool, testQueue, fmt.Sprintf(`{"i":%d}`, i))
	}
	n, err := pgmq.PurgeQueue(ctx, db.Pool, testQueue)
	if err != nil || n != 3 {
		t.Fatalf("PurgeQueue = %d, %v; want 3", n, err)
	}
	if l := pgmqtest.QueueLength(t, ctx, db.Pool, testQueue); l != 0 {
		t.Fatalf("length after purge = %d", l)
	}

	dropped, err := pgmq.DropQueue(ctx, db.Pool, testQueue)
	if err != nil || !dropped {
		t.Fatalf("DropQueue = %v, %v; want true", dropped, err)
	}
	qs, err = pgmq.ListQueues(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Name == testQueue {
			t.Errorf("dropped queue still listed")
		}
	}
	var gone bool
	if err := db.Pool.QueryRow(ctx, "SELECT to_regclass('pgmq.q_jobs') IS NULL AND to_regclass('pgmq.a_jobs') IS NULL").Scan(&gone); err != nil || !gone {
		t.Errorf("queue tables still exist after drop (%v)", err)
	}
}

func TestSendReadDelete(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id, err := pgmq.Send(ctx, db.Pool, testQueue, body(`{"task":"a","n":1}`), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("Read returned %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ID != id || m.ReadCount != 1 {
		t.Errorf("message = %+v, want id %d read_ct 1", m, id)
	}
	pgmqtest.AssertJSON(t, "body", m.Body, body(`{"n":1,"task":"a"}`))
	if m.Headers != nil {
		t.Errorf("headers = %s, want nil", m.Headers)
	}
	if m.EnqueuedAt.IsZero() || !m.VT.After(m.EnqueuedAt) {
		t.Errorf("enqueued_at %v, vt %v", m.EnqueuedAt, m.VT)
	}
	// Invisible while its vt runs.
	if again, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10); err != nil || len(again) != 0 {
		t.Fatalf("second Read = %v, %v; want nothing", again, err)
	}
	deleted, err := pgmq.Delete(ctx, db.Pool, testQueue, id)
	if err != nil || !deleted {
		t.Fatalf("Delete = %v, %v", deleted, err)
	}
	deleted, err = pgmq.Delete(ctx, db.Pool, testQueue, id)
	if err != nil || deleted {
		t.Fatalf("second Delete = %v, %v; want false", deleted, err)
	}
	if l := pgmqtest.QueueLength(t, ctx, db.Pool, testQueue); l != 0 {
		t.Fatalf("length after delete = %d", l)
	}
}

// Handlers ack inside their own transaction: the delete is undone with it.
func TestDeleteInRolledBackTransaction(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, tx, testQueue, 30*time.Second, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Read in tx = %v, %v", msgs, err)
	}
	if ok, err := pgmq.Delete(ctx, tx, testQueue, id); err != nil || !ok {
		t.Fatalf("Delete in tx = %v, %v", ok, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The read was rolled back too: visible again, read_ct unchanged.
	msgs, err = pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].ReadCount != 1 {
		t.Fatalf("Read after rollback = %+v, %v", msgs, err)
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	headers := body(`{"trace_id":"abc","attempt":2}`)
	one, err := pgmq.Send(ctx, db.Pool, testQueue, body(`{"k":1}`), pgmq.SendOptions{Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{"k":2}`), body(`{"k":3}`)}, pgmq.SendOptions{Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{"k":4}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]int64{one}, batch...), plain...)
	if !slices.Equal(pgmqtest.IDs(msgs), want) {
		t.Fatalf("read ids %v, want %v", pgmqtest.IDs(msgs), want)
	}
	for i, m := range msgs {
		pgmqtest.AssertJSON(t, "body", m.Body, body(fmt.Sprintf(`{"k":%d}`, i+1)))
		if i < 3 {
			pgmqtest.AssertJSON(t, "headers", m.Headers, headers)
		} else if m.Headers != nil {
			t.Errorf("message %d headers = %s, want nil", m.ID, m.Headers)
		}
	}
}

func TestSendBatchReturnsIDsInOrder(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	bodies := make([]json.RawMessage, 5)
	for i := range bodies {
		bodies[i] = body(fmt.Sprintf(`{"i":%d}`, i))
	}
	got, err := pgmq.SendBatch(ctx, db.Pool, testQueue, bodies, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bodies) || !slices.IsSorted(got) {
		t.Fatalf("SendBatch ids = %v", got)
	}
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pgmqtest.IDs(msgs), got) {
		t.Fatalf("read ids %v, sent %v", pgmqtest.IDs(msgs), got)
	}
	for i, m := range msgs {
		pgmqtest.AssertJSON(t, "body", m.Body, bodies[i])
	}
}

// Two readers never get the same message, and the second does not wait for the first.
func TestConcurrentReadersSkipLocked(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{"only":true}`)

	tx1, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(ctx) }()
	first, err := pgmq.Read(ctx, tx1, testQueue, 30*time.Second, 1)
	if err != nil || len(first) != 1 || first[0].ID != id {
		t.Fatalf("first reader got %v, %v", first, err)
	}

	tx2, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(ctx) }()
	// A reader that waited on tx1's row lock would hit this deadline instead of returning.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	second, err := pgmq.Read(wctx, tx2, testQueue, 30*time.Second, 1)
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	if len(second) != 0 {
		t.Fatalf("second reader got %v while the first holds the message", pgmqtest.IDs(second))
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Once committed the message is invisible (its vt is in the future) to new statements too.
	second, err = pgmq.Read(wctx, tx2, testQueue, 30*time.Second, 1)
	if err != nil || len(second) != 0 {
		t.Fatalf("reader after commit got %v, %v", second, err)
	}
}

func TestExpiredVTRedelivers(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	first, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 1)
	if err != nil || len(first) != 1 || first[0].ReadCount != 1 {
		t.Fatalf("first read = %+v, %v", first, err)
	}
	if msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 1); err != nil || len(msgs) != 0 {
		t.Fatalf("read during vt = %+v, %v", msgs, err)
	}
	pgmqtest.MakeVisible(t, ctx, db.Pool, testQueue, id)
	again, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 1)
	if err != nil || len(again) != 1 {
		t.Fatalf("read after vt expiry = %+v, %v", again, err)
	}
	if again[0].ID != id || again[0].ReadCount != 2 {
		t.Fatalf("redelivered %+v, want id %d read_ct 2", again[0], id)
	}
}

func TestReadVTRoundsUpToWholeSeconds(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	before := pgmqtest.Clock(t, ctx, db.Pool)
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, time.Millisecond, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Read = %v, %v", msgs, err)
	}
	after := pgmqtest.Clock(t, ctx, db.Pool)
	pgmqtest.AssertVTAfter(t, msgs[0].VT, before, after, time.Second)
}

func TestDelayHidesMessage(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	before := pgmqtest.Clock(t, ctx, db.Pool)
	id, err := pgmq.Send(ctx, db.Pool, testQueue, body(`{"later":true}`), pgmq.SendOptions{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	after := pgmqtest.Clock(t, ctx, db.Pool)
	if msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("Read = %+v, %v; want nothing", msgs, err)
	}
	m, err := pgmq.QueueMetrics(ctx, db.Pool, testQueue)
	if err != nil {
		t.Fatal(err)
	}
	if m.Length != 1 || m.VisibleLength != 0 {
		t.Fatalf("metrics = %+v, want length 1, visible 0", m)
	}
	var vt time.Time
	if err := db.Pool.QueryRow(ctx, "SELECT vt FROM pgmq.q_jobs WHERE msg_id = $1", id).Scan(&vt); err != nil {
		t.Fatal(err)
	}
	pgmqtest.AssertVTAfter(t, vt, before, after, time.Hour)

	// A batch delay hides every message of the batch.
	if _, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{}`), body(`{}`)}, pgmq.SendOptions{Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("Read after delayed batch = %+v, %v; want nothing", msgs, err)
	}
	pgmqtest.MakeVisible(t, ctx, db.Pool, testQueue, id)
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 10)
	if err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].ReadCount != 1 {
		t.Fatalf("Read once due = %+v, %v", msgs, err)
	}
}

func TestArchive(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{"keep":"me"}`)
	ok, err := pgmq.Archive(ctx, db.Pool, testQueue, id)
	if err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	var inQueue, inArchive int
	var archived json.RawMessage
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pgmq.q_jobs WHERE msg_id = $1", id).Scan(&inQueue); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, "SELECT count(*), max(message::text)::jsonb FROM pgmq.a_jobs WHERE msg_id = $1", id).Scan(&inArchive, &archived); err != nil {
		t.Fatal(err)
	}
	if inQueue != 0 || inArchive != 1 {
		t.Fatalf("after archive: %d in queue, %d in archive", inQueue, inArchive)
	}
	pgmqtest.AssertJSON(t, "archived message", archived, body(`{"keep":"me"}`))
	ok, err = pgmq.Archive(ctx, db.Pool, testQueue, id)
	if err != nil || ok {
		t.Fatalf("second Archive = %v, %v; want false", ok, err)
	}
}

// The batch forms report exactly the ids they removed.
func TestBatchDeleteAndArchiveReturnRemovedIDs(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	sent, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{"n":1}`), body(`{"n":2}`), body(`{"n":3}`), body(`{"n":4}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const unknown = 999_999
	archived, err := pgmq.ArchiveBatch(ctx, db.Pool, testQueue, []int64{sent[0], unknown, sent[1]})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{sent[0], sent[1]}; !slices.Equal(pgmqtest.Sorted(archived), want) {
		t.Fatalf("ArchiveBatch = %v, want %v", archived, want)
	}
	var archiveIDs []int64
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(array_agg(msg_id ORDER BY msg_id), '{}') FROM pgmq.a_jobs").Scan(&archiveIDs); err != nil {
		t.Fatal(err)
	}
	if want := []int64{sent[0], sent[1]}; !slices.Equal(archiveIDs, want) {
		t.Fatalf("archive table holds %v, want %v", archiveIDs, want)
	}

	// An already archived id is not in the queue any more: not deleted again.
	deleted, err := pgmq.DeleteBatch(ctx, db.Pool, testQueue, []int64{sent[3], sent[0], unknown, sent[2]})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{sent[2], sent[3]}; !slices.Equal(pgmqtest.Sorted(deleted), want) {
		t.Fatalf("DeleteBatch = %v, want %v", deleted, want)
	}
	if l := pgmqtest.QueueLength(t, ctx, db.Pool, testQueue); l != 0 {
		t.Fatalf("queue length = %d, want 0", l)
	}
	if got, err := pgmq.DeleteBatch(ctx, db.Pool, testQueue, []int64{unknown}); err != nil || len(got) != 0 {
		t.Fatalf("DeleteBatch(unknown) = %v, %v", got, err)
	}
}

func TestSetVT(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	for _, vt := range []time.Duration{90 * time.Second, time.Millisecond, 0} {
		want := (vt + time.Second - 1).Truncate(time.Second)
		before := pgmqtest.Clock(t, ctx, db.Pool)
		m, ok, err := pgmq.SetVT(ctx, db.Pool, testQueue, id, vt)
		if err != nil || !ok {
			t.Fatalf("SetVT(%v) = %v, %v", vt, ok, err)
		}
		after := pgmqtest.Clock(t, ctx, db.Pool)
		if m.ID != id || m.ReadCount != 0 {
			t.Fatalf("SetVT returned %+v", m)
		}
		pgmqtest.AssertVTAfter(t, m.VT, before, after, want)
		var vtNow time.Time
		if err := db.Pool.QueryRow(ctx, "SELECT vt FROM pgmq.q_jobs WHERE msg_id = $1", id).Scan(&vtNow); err != nil {
			t.Fatal(err)
		}
		if !vtNow.Equal(m.VT) {
			t.Fatalf("table vt %v, returned %v", vtNow, m.VT)
		}
	}
	// vt 0 makes it visible at once.
	if msgs, err := pgmq.Read(ctx, db.Pool, testQueue, 30*time.Second, 1); err != nil || len(msgs) != 1 {
		t.Fatalf("Read after SetVT 0 = %v, %v", msgs, err)
	}
	if _, ok, err := pgmq.SetVT(ctx, db.Pool, testQueue, 999_999, time.Minute); err != nil || ok {
		t.Fatalf("SetVT unknown = %v, %v; want false", ok, err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	empty, err := pgmq.QueueMetrics(ctx, db.Pool, testQueue)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Queue != testQueue || empty.Length != 0 || empty.VisibleLength != 0 || empty.NewestAge != nil || empty.OldestAge != nil || empty.ScrapeTime.IsZero() {
		t.Fatalf("empty queue metrics = %+v", empty)
	}
	for i := range 3 {
		pgmqtest.Send(t, ctx, db.Pool, testQueue, fmt.Sprintf(`{"i":%d}`, i))
	}
	if _, err := pgmq.Read(ctx, db.Pool, testQueue, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	m, err := pgmq.QueueMetrics(ctx, db.Pool, testQueue)
	if err != nil {
		t.Fatal(err)
	}
	if m.Length != 3 || m.VisibleLength != 2 || m.TotalMessages != 3 {
		t.Fatalf("metrics = %+v, want length 3, visible 2, total 3", m)
	}
	if m.NewestAge == nil || m.OldestAge == nil || *m.NewestAge < 0 || *m.OldestAge < *m.NewestAge {
		t.Fatalf("ages newest %v oldest %v", m.NewestAge, m.OldestAge)
	}
}

func TestMetricsAll(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	pgmqtest.Send(t, ctx, db.Pool, "orchestration_dlq", `{}`)
	all, err := pgmq.MetricsAll(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]pgmq.Metrics{}
	for _, m := range all {
		byName[m.Queue] = m
	}
	want := map[string]int64{testQueue: 2, "orchestration_dlq": 1, "orchestration_task_requests": 0, "orchestration_step_results": 0}
	for q, n := range want {
		m, ok := byName[q]
		if !ok {
			t.Errorf("MetricsAll lacks %s", q)
			continue
		}
		if m.Length != n || m.VisibleLength != n {
			t.Errorf("%s metrics = %+v, want length %d", q, m, n)
		}
	}
}

// The hot-path calls are one statement each.
func TestHotPathIsOneStatement(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	c := &countingDB{DB: db.Pool}
	check := func(name string) {
		t.Helper()
		if n := c.n.Swap(0); n != 1 {
			t.Errorf("%s made %d calls, want 1", name, n)
		}
	}
	id, err := pgmq.Send(ctx, c, testQueue, body(`{}`), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("Send")
	if _, err := pgmq.Send(ctx, c, testQueue, body(`{}`), pgmq.SendOptions{Headers: body(`{"h":1}`)}); err != nil {
		t.Fatal(err)
	}
	check("Send with headers")
	batch, err := pgmq.SendBatch(ctx, c, testQueue, []json.RawMessage{body(`{}`), body(`{}`)}, pgmq.SendOptions{Headers: body(`{"h":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	check("SendBatch")
	if _, err := pgmq.ArchiveBatch(ctx, c, testQueue, batch); err != nil {
		t.Fatal(err)
	}
	check("ArchiveBatch")
	if _, err := pgmq.DeleteBatch(ctx, c, testQueue, []int64{id}); err != nil {
		t.Fatal(err)
	}
	check("DeleteBatch")
}

// PGMQ's read returns any JSON body, not only objects (the conditional filter applies only when
// one is given).
func TestReadNonObjectBodies(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	bodies := []json.RawMessage{body(`[1,2]`), body(`"text"`), body(`42`), body(`null`)}
	sent, err := pgmq.SendBatch(ctx, db.Pool, testQueue, bodies, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pgmq.Read(ctx, db.Pool, testQueue, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pgmqtest.IDs(msgs), sent) {
		t.Fatalf("read %v, sent %v", pgmqtest.IDs(msgs), sent)
	}
	for i, m := range msgs {
		pgmqtest.AssertJSON(t, "body", m.Body, bodies[i])
	}
}
