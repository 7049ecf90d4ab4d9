package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

// Bad arguments are rejected before any query, with an error naming the operation and queue.
func TestBadClaimArgumentsNeverReachTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := &countingDB{t: t}
	for _, queue := range []string{"Bad-Name", "x; drop table", ""} {
		calls := map[string]func() error{
			"read_specific":       func() error { _, _, err := tasker.ReadSpecific(ctx, db, queue, 1, time.Second); return err },
			"read_specific_batch": func() error { _, err := tasker.ReadSpecificBatch(ctx, db, queue, []int64{1}, time.Second); return err },
			"enable_notify":       func() error { return tasker.EnableNotify(ctx, db, queue) },
			"read_specific_batch (queued)": func() error {
				var out []pgmq.Message
				return tasker.QueueReadSpecificBatch(&pgx.Batch{}, queue, []int64{1}, time.Second, &out)
			},
		}
		for op, call := range calls {
			err := call()
			if !errors.Is(err, pgmq.ErrInvalidQueueName) {
				t.Errorf("%s(%q) = %v, want ErrInvalidQueueName", op, queue, err)
				continue
			}
			if want := "tasker: " + strings.TrimSuffix(op, " (queued)") + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s(%q) = %q, want prefix %q", op, queue, err, want)
			}
			if !strings.Contains(err.Error(), strconv.Quote(queue)) {
				t.Errorf("%s(%q) = %q, does not name the queue", op, queue, err)
			}
		}
	}
	for name, call := range map[string]func() error{
		"read_specific": func() error {
			_, _, err := tasker.ReadSpecific(ctx, db, testQueue, 7, -time.Second)
			return err
		},
		"read_specific_batch": func() error {
			_, err := tasker.ReadSpecificBatch(ctx, db, testQueue, []int64{7}, -time.Second)
			return err
		},
	} {
		err := call()
		if want := "tasker: " + name + " " + testQueue + ": visibility timeout: negative duration"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s with a negative vt = %v, want prefix %q", name, err, want)
		}
	}
	// An empty batch is a no-op that needs no round trip.
	if got, err := tasker.ReadSpecificBatch(ctx, db, testQueue, nil, time.Second); err != nil || len(got) != 0 {
		t.Errorf("ReadSpecificBatch(nil) = %v, %v", got, err)
	}
	if n := db.n.Load(); n != 0 {
		t.Errorf("%d statements sent", n)
	}
}

// Of two concurrent claimers exactly one gets a visible message; the other does not wait.
func TestReadSpecificConcurrentClaimers(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{"claim":"me"}`)

	tx1, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(ctx) }()
	m, ok, err := tasker.ReadSpecific(ctx, tx1, testQueue, id, 30*time.Second)
	if err != nil || !ok || m.ID != id || m.ReadCount != 1 {
		t.Fatalf("first claimer = %+v, %v, %v", m, ok, err)
	}
	pgmqtest.AssertJSON(t, "body", m.Body, body(`{"claim":"me"}`))

	tx2, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(ctx) }()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m, ok, err := tasker.ReadSpecific(wctx, tx2, testQueue, id, 30*time.Second); err != nil || ok {
		t.Fatalf("second claimer = %+v, %v, %v; want nothing, at once", m, ok, err)
	}
	if err := tx2.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// The first claimer rolls back: the claim is undone and the message claimable again.
	if err := tx1.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	m, ok, err = tasker.ReadSpecific(ctx, db.Pool, testQueue, id, 30*time.Second)
	if err != nil || !ok || m.ReadCount != 1 {
		t.Fatalf("claim after rollback = %+v, %v, %v", m, ok, err)
	}
	// Now committed and invisible: nobody else can claim it.
	if _, ok, err := tasker.ReadSpecific(ctx, db.Pool, testQueue, id, 30*time.Second); err != nil || ok {
		t.Fatalf("claim of a claimed message = %v, %v; want false", ok, err)
	}
}

func TestReadSpecificNotClaimable(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	delayed, err := pgmq.Send(ctx, db.Pool, testQueue, body(`{}`), pgmq.SendOptions{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	read := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	if msgs, err := pgmq.Read(ctx, db.Pool, testQueue, time.Hour, 1); err != nil || len(msgs) != 1 || msgs[0].ID != read {
		t.Fatalf("Read = %v, %v", msgs, err)
	}
	deleted := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	if ok, err := pgmq.Delete(ctx, db.Pool, testQueue, deleted); err != nil || !ok {
		t.Fatal(ok, err)
	}
	archived := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	if ok, err := pgmq.Archive(ctx, db.Pool, testQueue, archived); err != nil || !ok {
		t.Fatal(ok, err)
	}
	cases := map[string]int64{"delayed": delayed, "invisible": read, "deleted": deleted, "archived": archived, "unknown": 999_999}
	for name, id := range cases {
		m, ok, err := tasker.ReadSpecific(ctx, db.Pool, testQueue, id, 30*time.Second)
		if err != nil || ok {
			t.Errorf("ReadSpecific(%s %d) = %+v, %v, %v; want not claimable", name, id, m, ok, err)
		}
	}
	var readCounts []int32
	if err := db.Pool.QueryRow(ctx, "SELECT array_agg(read_ct ORDER BY msg_id) FROM pgmq.q_jobs").Scan(&readCounts); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(readCounts, []int32{0, 1}) {
		t.Errorf("read counts %v after failed claims, want [0 1]", readCounts)
	}
}

func TestReadSpecificReadCountAndVT(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	for i, vt := range []time.Duration{45 * time.Second, 1500 * time.Millisecond, time.Hour} {
		want := (vt + time.Second - 1).Truncate(time.Second)
		before := pgmqtest.Clock(t, ctx, db.Pool)
		m, ok, err := tasker.ReadSpecific(ctx, db.Pool, testQueue, id, vt)
		if err != nil || !ok {
			t.Fatalf("claim %d = %v, %v", i+1, ok, err)
		}
		after := pgmqtest.Clock(t, ctx, db.Pool)
		if m.ReadCount != int32(i+1) {
			t.Fatalf("claim %d: read_ct %d, want %d", i+1, m.ReadCount, i+1)
		}
		pgmqtest.AssertVTAfter(t, m.VT, before, after, want)
		pgmqtest.MakeVisible(t, ctx, db.Pool, testQueue, id)
	}
}

func TestReadSpecificRejectsBadQueueName(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	id := pgmqtest.Send(t, ctx, db.Pool, testQueue, `{}`)
	for _, queue := range []string{"Bad-Name", "x; drop table", "jobs; delete from pgmq.q_jobs", "JOBS", ""} {
		if _, ok, err := tasker.ReadSpecific(ctx, db.Pool, queue, id, time.Second); err == nil || ok || !errors.Is(err, pgmq.ErrInvalidQueueName) {
			t.Errorf("ReadSpecific(%q) = %v, %v; want ErrInvalidQueueName", queue, ok, err)
		}
		if _, err := tasker.ReadSpecificBatch(ctx, db.Pool, queue, []int64{id}, time.Second); !errors.Is(err, pgmq.ErrInvalidQueueName) {
			t.Errorf("ReadSpecificBatch(%q) = %v; want ErrInvalidQueueName", queue, err)
		}
		// The SQL functions refuse such names too, for callers that bypass this package.
		for _, sql := range []string{
			"SELECT msg_id FROM tasker.pgmq_read_specific_message($1::text, $2::bigint, 1)",
			"SELECT msg_id FROM tasker.pgmq_read_specific_messages($1::text, ARRAY[$2::bigint], 1)",
		} {
			rows, err := db.Pool.Query(ctx, sql, queue, id)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			if err == nil {
				t.Errorf("%s with %q: no error", sql, queue)
			}
		}
	}
	if l := pgmqtest.QueueLength(t, ctx, db.Pool, testQueue); l != 1 {
		t.Fatalf("queue length %d, want 1", l)
	}
}

func TestReadSpecificBatch(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	sent, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{"n":1}`), body(`{"n":2}`), body(`{"n":3}`), body(`{"n":4}`), body(`{"n":5}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// sent[1] invisible (claimed), sent[2] deleted, sent[3] held by an open transaction.
	if _, ok, err := tasker.ReadSpecific(ctx, db.Pool, testQueue, sent[1], time.Hour); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := pgmq.Delete(ctx, db.Pool, testQueue, sent[2]); err != nil || !ok {
		t.Fatal(ok, err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, ok, err := tasker.ReadSpecific(ctx, tx, testQueue, sent[3], time.Hour); err != nil || !ok {
		t.Fatal(ok, err)
	}

	before := pgmqtest.Clock(t, ctx, db.Pool)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := tasker.ReadSpecificBatch(wctx, db.Pool, testQueue, []int64{sent[4], sent[3], 999_999, sent[2], sent[1], sent[0]}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	after := pgmqtest.Clock(t, ctx, db.Pool)
	if want := []int64{sent[0], sent[4]}; !slices.Equal(pgmqtest.IDs(got), want) {
		t.Fatalf("ReadSpecificBatch = %v, want %v", pgmqtest.IDs(got), want)
	}
	for _, m := range got {
		if m.ReadCount != 1 {
			t.Errorf("message %d read_ct %d, want 1", m.ID, m.ReadCount)
		}
		pgmqtest.AssertVTAfter(t, m.VT, before, after, 20*time.Second)
	}
	pgmqtest.AssertJSON(t, "body", got[1].Body, body(`{"n":5}`))
	// Claimed now, so a second batch claim gets nothing.
	if again, err := tasker.ReadSpecificBatch(wctx, db.Pool, testQueue, []int64{sent[0], sent[4]}, 20*time.Second); err != nil || len(again) != 0 {
		t.Fatalf("second ReadSpecificBatch = %v, %v", pgmqtest.IDs(again), err)
	}
}

// A batch claim is one statement.
func TestReadSpecificBatchIsOneStatement(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	sent, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{}`), body(`{}`), body(`{}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &countingDB{DB: db.Pool, t: t}
	got, err := tasker.ReadSpecificBatch(ctx, c, testQueue, sent, time.Minute)
	if err != nil || !slices.Equal(pgmqtest.IDs(got), sent) {
		t.Fatalf("ReadSpecificBatch = %v, %v; want %v", pgmqtest.IDs(got), err, sent)
	}
	if n := c.n.Load(); n != 1 {
		t.Errorf("ReadSpecificBatch made %d calls, want 1", n)
	}
}

// The queued form claims exactly like ReadSpecificBatch, sharing a round trip.
func TestQueueReadSpecificBatchPipelines(t *testing.T) {
	t.Parallel()
	ctx, db := pgmqtest.Setup(t, testQueue)
	ids, err := pgmq.SendBatch(ctx, db.Pool, testQueue, []json.RawMessage{body(`{"a":1}`), body(`{"a":2}`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []pgmq.Message
	var one int
	b := &pgx.Batch{}
	if err := tasker.QueueReadSpecificBatch(b, testQueue, append(ids, 999999), 30*time.Second, &got); err != nil {
		t.Fatal(err)
	}
	b.Queue("SELECT 1").QueryRow(func(r pgx.Row) error { return r.Scan(&one) })
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] || got[0].ReadCount != 1 || one != 1 {
		t.Fatalf("claimed %+v (and %d), want %v with read_ct 1", got, one, ids)
	}
	if err := tasker.QueueReadSpecificBatch(&pgx.Batch{}, "Bad-Name", ids, time.Second, &got); err == nil {
		t.Fatal("bad queue name accepted")
	}
}
