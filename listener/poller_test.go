package listener

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
)

const testQueue = "orchestration_task_requests"

func newTestPoller(db *testdb.DB, out *commands.NotificationChannel) *Poller {
	p := &Poller{DB: db.Pool, Queues: orchestrationQueues, Out: out}
	p.testSignals.round.Init()
	p.testSignals.idle.Init()
	p.testSignals.readError.Init()
	return p
}

func sendN(t *testing.T, db *testdb.DB, queue string, n int) []int64 {
	t.Helper()
	bodies := make([]json.RawMessage, n)
	for i := range bodies {
		bodies[i] = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
	}
	ids, err := pgmq.SendBatch(context.Background(), db.Pool, queue, bodies, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func messageIDs(msgs []pgmq.Message) []int64 {
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func TestPollerClaimsWithVisibilityTimeout(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	ids := sendN(t, db, testQueue, 3)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	p.VisibilityTimeout = 45 * time.Second
	runInBackground(t, p.Run)

	n := receive(t, out)
	if n.Source != commands.SourcePoll || n.Queue != testQueue || n.MsgIDs != nil || n.ReceivedAt.IsZero() {
		t.Fatalf("got %+v, want a poll notification for %s", n, testQueue)
	}
	if got := messageIDs(n.Messages); !slices.Equal(got, ids) {
		t.Fatalf("claimed %v, want %v", got, ids)
	}
	if p.Claimed() != 3 {
		t.Errorf("Claimed() = %d, want 3", p.Claimed())
	}
	// Claimed in the database: hidden for the visibility timeout, read once.
	var hidden, readOnce bool
	err := db.Pool.QueryRow(context.Background(), `
		SELECT bool_and(vt BETWEEN clock_timestamp() + interval '40 seconds' AND clock_timestamp() + interval '46 seconds'),
		       bool_and(read_ct = 1)
		FROM pgmq.q_orchestration_task_requests`).Scan(&hidden, &readOnce)
	if err != nil {
		t.Fatal(err)
	}
	if !hidden || !readOnce {
		t.Errorf("vt ≈ now+45s: %v, read_ct = 1: %v", hidden, readOnce)
	}
}

func TestPollerPeriodic(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	p.Interval = 5 * time.Millisecond
	runInBackground(t, p.Run)
	if r := p.testSignals.round.WaitOrTimeout(t); len(r.Queues) != 3 {
		t.Fatalf("first round read %v, want every queue", r.Queues)
	}
	// Not announced (no trigger, no listener): found by the next periodic round.
	ids := sendN(t, db, "orchestration_step_results", 1)
	if n := receive(t, out); n.Queue != "orchestration_step_results" || !slices.Equal(messageIDs(n.Messages), ids) {
		t.Fatalf("got %+v, want message %v", n, ids)
	}
	p.testSignals.round.WaitFor(t, func(r pollRound) bool { return r.Claimed == 1 })
	if p.Cycles() < 2 {
		t.Errorf("Cycles() = %d, want >= 2", p.Cycles())
	}
}

func TestPollerCapacity(t *testing.T) {
	t.Parallel()
	t.Run("zero capacity claims nothing", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t, 4)
		sendN(t, db, testQueue, 5)
		out := commands.NewNotificationChannel(10)
		p := newTestPoller(db, out)
		p.Periodic = true
		p.Interval = 5 * time.Millisecond
		p.Capacity = func() int { return 0 }
		runInBackground(t, p.Run)
		p.testSignals.round.WaitOrTimeout(t)
		p.testSignals.round.WaitOrTimeout(t)
		if p.Claimed() != 0 || out.Len() != 0 {
			t.Fatalf("Claimed() = %d, %d notifications; want nothing claimed", p.Claimed(), out.Len())
		}
		var unread int
		if err := db.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pgmq.q_orchestration_task_requests WHERE read_ct = 0 AND vt <= clock_timestamp()").Scan(&unread); err != nil {
			t.Fatal(err)
		}
		if unread != 5 {
			t.Errorf("%d messages still visible and unread, want 5", unread)
		}
	})
	t.Run("claims at most capacity", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t, 4)
		sendN(t, db, testQueue, 10)
		out := commands.NewNotificationChannel(10)
		p := newTestPoller(db, out)
		p.Capacity = func() int { return 4 - int(p.Claimed()) } // room for 4 in all
		p.BatchSize = 3
		runInBackground(t, p.Run)
		p.testSignals.idle.WaitOrTimeout(t)
		p.TriggerAll()
		p.testSignals.idle.WaitOrTimeout(t)
		if p.Claimed() != 4 {
			t.Fatalf("Claimed() = %d, want 4 (capacity)", p.Claimed())
		}
		if a, b := receive(t, out), receive(t, out); len(a.Messages) != 3 || len(b.Messages) != 1 {
			t.Errorf("reads of %d and %d messages, want 3 (BatchSize) and 1 (what capacity left)", len(a.Messages), len(b.Messages))
		}
	})
}

func TestPollerTrigger(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	runInBackground(t, p.Run)
	p.testSignals.idle.WaitOrTimeout(t)
	if p.Cycles() != 0 {
		t.Fatalf("a non-periodic poller polled %d times untriggered", p.Cycles())
	}
	ids := sendN(t, db, "orchestration_task_finalizations", 2)
	p.Trigger("orchestration_task_finalizations")
	if r := p.testSignals.round.WaitOrTimeout(t); !slices.Equal(r.Queues, []string{"orchestration_task_finalizations"}) || r.Claimed != 2 {
		t.Fatalf("round %+v, want the triggered queue only, 2 claimed", r)
	}
	if n := receive(t, out); !slices.Equal(messageIDs(n.Messages), ids) {
		t.Fatalf("got %v, want %v", messageIDs(n.Messages), ids)
	}
	p.testSignals.idle.WaitOrTimeout(t)
	p.Trigger("not_served") // ignored
	p.TriggerAll()
	if r := p.testSignals.round.WaitOrTimeout(t); len(r.Queues) != 3 {
		t.Fatalf("TriggerAll round read %v, want every queue", r.Queues)
	}
}

func TestPollerTriggerCoalesces(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	p := newTestPoller(db, commands.NewNotificationChannel(10))
	for range 5 { // before Run: pending, and coalesced
		p.Trigger(testQueue)
	}
	p.TriggerAll()
	p.TriggerAll()
	runInBackground(t, p.Run)
	p.testSignals.idle.WaitOrTimeout(t)
	if p.Cycles() != 1 {
		t.Fatalf("Cycles() = %d after coalesced triggers, want 1", p.Cycles())
	}
}

func TestPollerDrainsFullBatches(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	ids := sendN(t, db, testQueue, 250)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.BatchSize = 100
	runInBackground(t, p.Run)
	p.testSignals.idle.WaitOrTimeout(t)
	p.Trigger(testQueue) // one trigger
	p.testSignals.idle.WaitOrTimeout(t)
	if p.Claimed() != 250 || p.Cycles() != 3 {
		t.Fatalf("Claimed() = %d, Cycles() = %d; want 250 in 3 rounds", p.Claimed(), p.Cycles())
	}
	var got []int64
	for _, size := range []int{100, 100, 50} {
		n := receive(t, out)
		if len(n.Messages) != size {
			t.Errorf("read of %d messages, want %d", len(n.Messages), size)
		}
		got = append(got, messageIDs(n.Messages)...)
	}
	if !slices.Equal(got, ids) {
		t.Error("the drained messages are not the 250 sent, in order")
	}
}

func TestPollerReadErrorIsNotFatal(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, "SELECT pgmq.drop_queue('orchestration_task_finalizations')"); err != nil {
		t.Fatal(err)
	}
	ids := sendN(t, db, testQueue, 1)
	core, logs := observer.New(zapcore.ErrorLevel)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	p.Interval = 5 * time.Millisecond
	p.Logger = zap.New(core)
	runInBackground(t, p.Run)

	if q := p.testSignals.readError.WaitOrTimeout(t); q != "orchestration_task_finalizations" {
		t.Fatalf("read error on %s", q)
	}
	if n := receive(t, out); !slices.Equal(messageIDs(n.Messages), ids) {
		t.Fatalf("the other queues were not polled: got %+v", n)
	}
	p.testSignals.readError.WaitOrTimeout(t) // retried on a later round: Run goes on
	if p.Errors() < 2 {
		t.Errorf("Errors() = %d, want >= 2", p.Errors())
	}
	entries := logs.FilterField(zap.String("queue", "orchestration_task_finalizations")).All()
	if len(entries) == 0 || !strings.Contains(entries[0].Message, "read failed") {
		t.Fatalf("no error log naming the queue: %v", logs.All())
	}
}

func TestPollerJitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, 900 * time.Millisecond}, {0.5, time.Second}, {0.999999, 1100 * time.Millisecond}} {
		c := &pollConfig{rand: func() float64 { return tc.r }}
		if got := c.jitter(time.Second); (got - tc.want).Abs() > time.Millisecond {
			t.Errorf("jitter(1s) with rand %v = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestPollerConfigErrors(t *testing.T) {
	t.Parallel()
	out := commands.NewNotificationChannel(1)
	db := blackholeDB{}
	cases := []struct {
		p    *Poller
		want string
	}{
		{&Poller{Queues: []string{"q"}, Out: out}, "DB"},
		{&Poller{DB: db, Out: out}, "Queues"},
		{&Poller{DB: db, Queues: []string{"q"}}, "Out"},
		{&Poller{DB: db, Queues: []string{"Bad Name"}, Out: out}, "invalid queue name"},
		{&Poller{DB: db, Queues: []string{"q"}, Out: out, Interval: -1}, "Interval"},
	}
	for _, tc := range cases {
		if err := tc.p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run() = %v, want an error mentioning %s", err, tc.want)
		}
	}
}

// With MinAge, periodic polls leave fresh messages to the notification path and take only
// those visible for longer; a triggered poll still takes everything.
func TestPollerMinAgeLeavesFreshMessagesToNotify(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	p.Interval = 5 * time.Millisecond
	p.MinAge = time.Hour
	runInBackground(t, p.Run)
	p.testSignals.round.WaitOrTimeout(t) // the full poll at start

	fresh := sendN(t, db, testQueue, 1)
	missed := sendN(t, db, testQueue, 1)
	if _, err := db.Pool.Exec(context.Background(),
		"UPDATE pgmq.q_"+testQueue+" SET vt = clock_timestamp() - interval '2 hours' WHERE msg_id = $1", missed[0]); err != nil {
		t.Fatal(err)
	}
	if n := receive(t, out); !slices.Equal(messageIDs(n.Messages), missed) {
		t.Fatalf("periodic poll claimed %v, want only the missed message %v", messageIDs(n.Messages), missed)
	}
	// Several more periodic rounds: the fresh message stays unclaimed.
	for range 3 {
		p.testSignals.round.WaitFor(t, func(r pollRound) bool { return r.Claimed == 0 })
	}
	p.Trigger(testQueue)
	if n := receive(t, out); !slices.Equal(messageIDs(n.Messages), fresh) {
		t.Fatalf("triggered poll claimed %v, want the fresh message %v", messageIDs(n.Messages), fresh)
	}
}
