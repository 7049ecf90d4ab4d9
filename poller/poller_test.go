package poller

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
	p.TestSignals.Round.Init()
	p.TestSignals.Idle.Init()
	p.TestSignals.PollError.Init()
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

func TestPollerDiscoversWithoutClaiming(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	ids := sendN(t, db, testQueue, 3)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	runInBackground(t, p.Run)

	n := receive(t, out)
	if n.Queue != testQueue || !slices.Equal(n.MsgIDs, ids) || n.ReceivedAt.IsZero() {
		t.Fatalf("got %+v, want a notification of %v on %s", n, ids, testQueue)
	}
	if p.Discovered() != 3 {
		t.Errorf("Discovered() = %d, want 3", p.Discovered())
	}
	// Nothing was claimed: the messages are still visible and unread, for the actor to claim.
	var unclaimed int
	if err := db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pgmq.q_orchestration_task_requests WHERE read_ct = 0 AND vt <= clock_timestamp()").Scan(&unclaimed); err != nil {
		t.Fatal(err)
	}
	if unclaimed != 3 {
		t.Errorf("%d messages visible and unread, want 3", unclaimed)
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
	if r := p.TestSignals.Round.WaitOrTimeout(t); len(r.Queues) != 3 {
		t.Fatalf("first round polled %v, want every queue", r.Queues)
	}
	// Not announced (no trigger, no listener): found by a later periodic round.
	ids := sendN(t, db, "orchestration_step_results", 1)
	if n := receive(t, out); n.Queue != "orchestration_step_results" || !slices.Equal(n.MsgIDs, ids) {
		t.Fatalf("got %+v, want message %v", n, ids)
	}
	p.TestSignals.Round.WaitFor(t, func(r RoundEvent) bool { return r.Found == 1 })
	if p.Cycles() < 2 {
		t.Errorf("Cycles() = %d, want >= 2", p.Cycles())
	}
}

func TestPollerCapacity(t *testing.T) {
	t.Parallel()
	t.Run("zero capacity finds nothing", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t, 4)
		sendN(t, db, testQueue, 5)
		out := commands.NewNotificationChannel(10)
		p := newTestPoller(db, out)
		p.Periodic = true
		p.Interval = 5 * time.Millisecond
		p.Capacity = func() int { return 0 }
		runInBackground(t, p.Run)
		p.TestSignals.Round.WaitOrTimeout(t)
		p.TestSignals.Round.WaitOrTimeout(t)
		if p.Discovered() != 0 || out.Len() != 0 {
			t.Fatalf("Discovered() = %d, %d notifications; want nothing", p.Discovered(), out.Len())
		}
	})
	t.Run("finds at most capacity", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t, 4)
		ids := sendN(t, db, testQueue, 10)
		out := commands.NewNotificationChannel(10)
		p := newTestPoller(db, out)
		p.Capacity = func() int { return 4 - int(p.Discovered()) } // room for 4 in all
		p.BatchSize = 3
		runInBackground(t, p.Run)
		p.TestSignals.Idle.WaitOrTimeout(t)
		p.TriggerAll()
		p.TestSignals.Idle.WaitOrTimeout(t)
		if p.Discovered() != 4 {
			t.Fatalf("Discovered() = %d, want 4 (capacity)", p.Discovered())
		}
		// The second poll continues after the first: the first ids are not found twice.
		if a, b := receive(t, out), receive(t, out); !slices.Equal(a.MsgIDs, ids[:3]) || !slices.Equal(b.MsgIDs, ids[3:4]) {
			t.Errorf("found %v and %v, want %v (BatchSize) and %v (what capacity left)", a.MsgIDs, b.MsgIDs, ids[:3], ids[3:4])
		}
	})
}

func TestPollerTrigger(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	runInBackground(t, p.Run)
	p.TestSignals.Idle.WaitOrTimeout(t)
	if p.Cycles() != 0 {
		t.Fatalf("a non-periodic poller polled %d times untriggered", p.Cycles())
	}
	ids := sendN(t, db, "orchestration_task_finalizations", 2)
	p.Trigger("orchestration_task_finalizations")
	if r := p.TestSignals.Round.WaitOrTimeout(t); !slices.Equal(r.Queues, []string{"orchestration_task_finalizations"}) || r.Found != 2 {
		t.Fatalf("round %+v, want the triggered queue only, 2 found", r)
	}
	if n := receive(t, out); !slices.Equal(n.MsgIDs, ids) {
		t.Fatalf("got %v, want %v", n.MsgIDs, ids)
	}
	p.TestSignals.Idle.WaitOrTimeout(t)
	p.Trigger("not_served") // ignored
	p.TriggerAll()
	if r := p.TestSignals.Round.WaitOrTimeout(t); len(r.Queues) != 3 {
		t.Fatalf("TriggerAll round polled %v, want every queue", r.Queues)
	}
	// A trigger polls from the start again: the two messages, still unclaimed, are found again.
	if n := receive(t, out); !slices.Equal(n.MsgIDs, ids) {
		t.Fatalf("got %v, want %v", n.MsgIDs, ids)
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
	p.TestSignals.Idle.WaitOrTimeout(t)
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
	p.TestSignals.Idle.WaitOrTimeout(t)
	p.Trigger(testQueue) // one trigger
	p.TestSignals.Idle.WaitOrTimeout(t)
	if p.Discovered() != 250 || p.Cycles() != 3 {
		t.Fatalf("Discovered() = %d, Cycles() = %d; want 250 in 3 rounds", p.Discovered(), p.Cycles())
	}
	var got []int64
	for _, size := range []int{100, 100, 50} {
		n := receive(t, out)
		if len(n.MsgIDs) != size {
			t.Errorf("a poll of %d ids, want %d", len(n.MsgIDs), size)
		}
		got = append(got, n.MsgIDs...)
	}
	if !slices.Equal(got, ids) {
		t.Error("the drained ids are not the 250 sent, in order")
	}
}

func TestPollerErrorIsNotFatal(t *testing.T) {
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

	if q := p.TestSignals.PollError.WaitOrTimeout(t); q != "orchestration_task_finalizations" {
		t.Fatalf("poll error on %s", q)
	}
	if n := receive(t, out); !slices.Equal(n.MsgIDs, ids) {
		t.Fatalf("the other queues were not polled: got %+v", n)
	}
	p.TestSignals.PollError.WaitOrTimeout(t) // retried on a later round: Run goes on
	if p.Errors() < 2 {
		t.Errorf("Errors() = %d, want >= 2", p.Errors())
	}
	entries := logs.FilterField(zap.String("queue", "orchestration_task_finalizations")).All()
	if len(entries) == 0 || !strings.Contains(entries[0].Message, "poll failed") {
		t.Fatalf("no error log naming the queue: %v", logs.All())
	}
}

// someDB stands for a database in configuration checks; Run must refuse before using it.
type someDB struct{ pgmq.DB }

func TestPollerConfigErrors(t *testing.T) {
	t.Parallel()
	out := commands.NewNotificationChannel(1)
	db := someDB{}
	fetch := func(context.Context, string, int) (int, error) { return 0, nil }
	cases := []struct {
		p    *Poller
		want string
	}{
		{&Poller{Queues: []string{"q"}, Out: out}, "DB"},
		{&Poller{DB: db, Out: out}, "Queues"},
		{&Poller{DB: db, Queues: []string{"q"}}, "Out"},
		{&Poller{DB: db, Queues: []string{"Bad Name"}, Out: out}, "invalid queue name"},
		{&Poller{DB: db, Queues: []string{"q"}, Out: out, Interval: -1}, "Interval"},
		{&Poller{DB: db, Queues: []string{"q"}, Out: out, BatchSize: -1}, "BatchSize"},
		{&Poller{Queues: []string{"q"}, Fetch: fetch, MinAge: time.Second}, "MinAge"},
	}
	for _, tc := range cases {
		if err := tc.p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run() = %v, want an error mentioning %s", err, tc.want)
		}
	}
}

// With MinAge, periodic polls leave fresh messages to the notification path and find only
// those visible for longer; a triggered poll finds everything.
func TestPollerMinAgeLeavesFreshMessagesToNotify(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	out := commands.NewNotificationChannel(10)
	p := newTestPoller(db, out)
	p.Periodic = true
	p.Interval = 5 * time.Millisecond
	p.MinAge = time.Hour
	runInBackground(t, p.Run)
	p.TestSignals.Round.WaitOrTimeout(t) // the full poll at start

	fresh := sendN(t, db, testQueue, 1)
	missed := sendN(t, db, testQueue, 1)
	if _, err := db.Pool.Exec(context.Background(),
		"UPDATE pgmq.q_"+testQueue+" SET vt = clock_timestamp() - interval '2 hours' WHERE msg_id = $1", missed[0]); err != nil {
		t.Fatal(err)
	}
	for range 3 { // several periodic polls: each finds the missed message only
		if n := receive(t, out); !slices.Equal(n.MsgIDs, missed) {
			t.Fatalf("periodic poll found %v, want only the missed message %v", n.MsgIDs, missed)
		}
	}
	p.Trigger(testQueue)
	for {
		n := receive(t, out)
		if slices.Equal(n.MsgIDs, missed) {
			continue // a periodic poll before the trigger's
		}
		if want := append(fresh, missed...); !slices.Equal(n.MsgIDs, want) {
			t.Fatalf("triggered poll found %v, want %v", n.MsgIDs, want)
		}
		break
	}
}

// Fetch replaces discovery inside the same loop: it is asked for at most min(BatchSize,
// Capacity()), a full fetch is repeated at once, and a queue held back for lack of capacity
// resumes when there is room.
func TestPollerFetch(t *testing.T) {
	t.Parallel()
	var free, waiting atomic.Int64
	free.Store(6)
	waiting.Store(10)
	asked := make(chan int, 100)
	p := &Poller{
		Queues:    []string{testQueue},
		BatchSize: 4,
		Capacity:  func() int { return int(free.Load()) },
		Fetch: func(_ context.Context, queue string, max int) (int, error) {
			if queue != testQueue {
				return 0, errors.New("unexpected queue " + queue)
			}
			got := min(int64(max), waiting.Load())
			waiting.Add(-got)
			free.Add(-got)
			asked <- max
			return int(got), nil
		},
	}
	p.TestSignals.Idle.Init()
	p.TestSignals.Round.Init()
	runInBackground(t, p.Run)
	p.TestSignals.Idle.WaitOrTimeout(t)
	p.Trigger(testQueue)
	for _, want := range []int{4, 2} { // BatchSize, then what capacity left
		if got := <-asked; got != want {
			t.Fatalf("Fetch asked for %d, want %d", got, want)
		}
	}
	// No room: the queue is held back and looked at again, but not fetched.
	p.TestSignals.Idle.WaitOrTimeout(t)
	p.TestSignals.Idle.WaitOrTimeout(t)
	if len(asked) != 0 {
		t.Fatalf("Fetch called with no capacity (asked for %d)", <-asked)
	}
	free.Add(3)
	p.CapacityFreed()
	if got := <-asked; got != 3 {
		t.Fatalf("after freeing 3: Fetch asked for %d, want 3", got)
	}
	free.Add(5)
	p.CapacityFreed()
	if got := <-asked; got != 4 { // 1 left: not a full fetch, so the drain ends
		t.Fatalf("Fetch asked for %d, want 4", got)
	}
	p.TestSignals.Round.WaitFor(t, func(r RoundEvent) bool { return r.Found == 1 })
	if len(asked) != 0 || p.Discovered() != 10 {
		t.Fatalf("%d more fetches, %d taken; want none more, 10", len(asked), p.Discovered())
	}
}
