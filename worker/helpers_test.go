package worker

import (
	"context"
	"encoding/json"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testNamespace = "demo"
	testQueue     = "worker_demo_queue"
	// waitLimit bounds every wait of the tests; nothing normally takes more than a few seconds.
	waitLimit = 20 * time.Second
)

// newDB returns a fresh database with the demo worker queue (and its notify trigger).
func newDB(t *testing.T) *testdb.DB {
	t.Helper()
	db := testdb.New(t, 12)
	ctx := context.Background()
	if err := pgmq.Create(ctx, db.Pool, testQueue); err != nil {
		t.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, db.Pool, testQueue); err != nil {
		t.Fatal(err)
	}
	return db
}

// newWorker returns a worker on db with every test signal enabled and a test logger.
func newWorker(t *testing.T, db *testdb.DB) *Worker {
	t.Helper()
	w := &Worker{Pool: db.Pool, Namespace: testNamespace, WorkerID: "test-worker", Logger: zaptest.NewLogger(t)}
	s := &w.testSignals
	s.listening.Init()
	s.polled.Init()
	s.capacity.Init()
	s.pollRound.Init()
	s.started.Init()
	s.heartbeat.Init()
	s.committed.Init()
	s.duplicate.Init()
	s.archived.Init()
	s.abandoned.Init()
	s.stopping.Init()
	return w
}

// running is a Worker.Run in progress.
type running struct {
	cancel context.CancelFunc
	errc   chan error
}

// start runs w until the test ends (or stop is called).
func start(t *testing.T, w *Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- w.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return nil. Safe to call twice.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wait(t)
}

// wait waits for Run to return nil.
func (r *running) wait(t *testing.T) {
	t.Helper()
	if r.errc == nil {
		return
	}
	select {
	case err := <-r.errc:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.errc = nil
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
	}
}

// wait returns the next value of an enabled test signal, failing the test after waitLimit.
func wait[T any](t *testing.T, s *testsignal.Signal[T], what string) T {
	t.Helper()
	select {
	case v := <-s.C():
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitN waits for n values of a signal.
func waitN[T any](t *testing.T, s *testsignal.Signal[T], n int, what string) []T {
	t.Helper()
	vs := make([]T, n)
	for i := range n {
		vs[i] = wait(t, s, what)
	}
	return vs
}

// newDispatch returns a valid dispatch for callable.
func newDispatch(callable string) messages.StepDispatch {
	return messages.StepDispatch{
		TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New(),
		Namespace: testNamespace, TaskName: "linear", TaskVersion: "1.0.0", StepName: "add_ten",
		Handler:     messages.HandlerSpec{Callable: callable, Initialization: json.RawMessage(`{"addend":10}`)},
		Attempt:     2,
		MaxAttempts: 3,
		TaskContext: json.RawMessage(`{"n":6}`),
		DependencyResults: map[string]json.RawMessage{
			"double": json.RawMessage(`72`),
		},
	}
}

// send enqueues a dispatch and returns its msg_id.
func send(t *testing.T, db *testdb.DB, d messages.StepDispatch) int64 {
	t.Helper()
	body, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return sendRaw(t, db, string(body))
}

func sendRaw(t *testing.T, db *testdb.DB, body string) int64 {
	t.Helper()
	id, err := pgmq.Send(context.Background(), db.Pool, testQueue, json.RawMessage(body), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// results claims and decodes every step result sent so far.
func results(t *testing.T, db *testdb.DB) []messages.StepResult {
	t.Helper()
	msgs, err := pgmq.Read(context.Background(), db.Pool, messages.QueueStepResults, 30*time.Second, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]messages.StepResult, 0, len(msgs))
	for _, m := range msgs {
		r, err := messages.DecodeStepResult(m.Body)
		if err != nil {
			t.Fatalf("result %d %s: %v", m.ID, m.Body, err)
		}
		out = append(out, r)
	}
	return out
}

// queueLen counts the messages left in the worker queue (visible or not).
func queueLen(t *testing.T, db *testdb.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgmq.q_worker_demo_queue").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// readCount returns a message's read_ct.
func readCount(t *testing.T, db *testdb.DB, msgID int64) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(),
		"SELECT read_ct FROM pgmq.q_worker_demo_queue WHERE msg_id = $1", msgID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fakeClock advances by step on every call, so execution_time_ms is predictable.
func fakeClock(step time.Duration) func() time.Time {
	var calls atomic.Int64
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time { return base.Add(time.Duration(calls.Add(1)-1) * step) }
}

// jsonEqual compares two JSON documents by value (jsonb reformats what it stores).
func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("invalid JSON %s: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("invalid want JSON %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
