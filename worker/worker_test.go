package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/poller"
)

func TestRunsDispatchOnceAndReportsResult(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	w.Now = fakeClock(1500 * time.Millisecond)

	var calls atomic.Int32
	steps := make(chan Step, 10)
	w.Handle("demo.add", func(ctx context.Context, step Step) (any, error) {
		calls.Add(1)
		steps <- step
		var init struct{ Addend int }
		if err := step.DecodeInitialization(&init); err != nil {
			return nil, err
		}
		var parent int
		if err := step.DependencyResult("double", &parent); err != nil {
			return nil, err
		}
		return map[string]int{"value": parent + init.Addend}, nil
	})

	d := newDispatch("demo.add")
	msgID := send(t, db, d)
	start(t, w)
	if got := wait(t, &w.testSignals.committed, "the result"); got != msgID {
		t.Fatalf("committed msg %d, want %d", got, msgID)
	}

	rs := results(t, db)
	if len(rs) != 1 {
		t.Fatalf("%d results, want 1: %+v", len(rs), rs)
	}
	r := rs[0]
	if r.TaskUUID != d.TaskUUID || r.StepUUID != d.StepUUID || r.CorrelationID != d.CorrelationID || r.Attempt != 2 {
		t.Errorf("result ids %v %v %v attempt %d, want those of the dispatch", r.TaskUUID, r.StepUUID, r.CorrelationID, r.Attempt)
	}
	info := r.Result
	if !info.Success || info.Status != messages.StatusCompleted || info.Error != nil || info.OrchestrationMetadata != nil {
		t.Errorf("result %+v, want a plain success", info)
	}
	if !jsonEqual(t, info.Result, `{"value":82}`) {
		t.Errorf("result.result %s, want {\"value\":82}", info.Result)
	}
	if !jsonEqual(t, info.Metadata, `{"execution_time_ms":1500,"worker_id":"test-worker"}`) {
		t.Errorf("result.metadata %s", info.Metadata)
	}

	step := <-steps
	if step.Attempt != 2 || step.MaxAttempts != 3 || step.MsgID != msgID || step.ReadCount != 1 ||
		!jsonEqual(t, step.TaskContext, `{"n":6}`) || step.Callable() != "demo.add" || step.Name() != "add_ten" ||
		step.Dispatch.StepUUID != d.StepUUID {
		t.Errorf("step %+v does not match the dispatch", step)
	}

	if n := queueLen(t, db); n != 0 {
		t.Errorf("%d messages left in the worker queue, want the dispatch deleted", n)
	}
	var archived int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgmq.a_worker_demo_queue").Scan(&archived); err != nil {
		t.Fatal(err)
	}
	if archived != 0 {
		t.Errorf("%d archived, want 0 (deleted, not archived)", archived)
	}
	if calls.Load() != 1 || w.Processed() != 1 || w.Failed() != 0 {
		t.Errorf("calls %d processed %d failed %d, want 1 1 0", calls.Load(), w.Processed(), w.Failed())
	}
}

func TestErrorsMapToStatus(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	w.Concurrency = 3

	boom := errors.New("gateway timeout")
	handlers := map[string]Handler{
		"retryable": func(context.Context, Step) (any, error) { return nil, Retryable(boom) },
		"after":     func(context.Context, Step) (any, error) { return nil, RetryableAfter(boom, 2500*time.Millisecond) },
		"permanent": func(context.Context, Step) (any, error) { return nil, Permanent(boom) },
		"plain":     func(context.Context, Step) (any, error) { return nil, fmt.Errorf("call: %w", boom) },
		"panic":     func(context.Context, Step) (any, error) { panic("kaboom") },
		"typed": func(context.Context, Step) (any, error) {
			return nil, WithErrorType(RetryableAfter(boom, 30*time.Second), "rate_limited")
		},
		"badresult": func(context.Context, Step) (any, error) { return make(chan int), nil },
		"raw":       func(context.Context, Step) (any, error) { return json.RawMessage(`{"raw": true}`), nil },
		"nul":       func(context.Context, Step) (any, error) { return nil, errors.New("bad\x00byte") },
		"nulresult": func(context.Context, Step) (any, error) { return map[string]string{"v": "a\x00b"}, nil },
		"badinput": func(_ context.Context, s Step) (any, error) {
			var v struct{ N string }
			return nil, s.DecodeContext(&v) // n is a number: wrong type
		},
	}
	for name, h := range handlers {
		w.Handle(name, h)
	}
	type want struct {
		status    messages.StepStatus
		retryable bool
		message   string
		errorType string
		backoff   float64 // 0: no hint
		result    string
	}
	cases := map[string]want{
		"retryable": {status: messages.StatusFailed, retryable: true, message: "gateway timeout"},
		"after":     {status: messages.StatusFailed, retryable: true, message: "gateway timeout", backoff: 2.5},
		"permanent": {status: messages.StatusError, message: "gateway timeout"},
		"plain":     {status: messages.StatusFailed, retryable: true, message: "call: gateway timeout"},
		"panic":     {status: messages.StatusFailed, retryable: true, message: "panic: kaboom", errorType: "panic"},
		"typed":     {status: messages.StatusFailed, retryable: true, message: "gateway timeout", errorType: "rate_limited", backoff: 30},
		"badresult": {status: messages.StatusError, message: "encode result as JSON", errorType: "invalid_result"},
		"raw":       {status: messages.StatusCompleted, result: `{"raw":true}`},
		"nul":       {status: messages.StatusFailed, retryable: true, message: "bad\ufffdbyte"},
		"nulresult": {status: messages.StatusCompleted, result: `{"v":"a\ufffdb"}`},
		"badinput":  {status: messages.StatusError, message: "decode task_context", errorType: "invalid_input"},
		"nope":      {status: messages.StatusError, message: `no handler registered for callable "nope"`, errorType: "unknown_callable"},
	}
	byStep := make(map[uuid.UUID]string)
	for name := range cases {
		d := newDispatch(name)
		byStep[d.StepUUID] = name
		send(t, db, d)
	}
	start(t, w)
	waitN(t, &w.testSignals.committed, len(cases), "the results")

	rs := results(t, db)
	if len(rs) != len(cases) {
		t.Fatalf("%d results, want %d", len(rs), len(cases))
	}
	for _, r := range rs {
		name := byStep[r.StepUUID]
		want, info := cases[name], r.Result
		t.Run(name, func(t *testing.T) {
			if info.Status != want.status || info.Success != (want.status == messages.StatusCompleted) {
				t.Errorf("status %v success %v, want %v", info.Status, info.Success, want.status)
			}
			if want.status == messages.StatusCompleted {
				if info.Error != nil || !jsonEqual(t, info.Result, want.result) {
					t.Errorf("result %s error %+v, want %s", info.Result, info.Error, want.result)
				}
				return
			}
			if info.Error == nil {
				t.Fatal("no error")
			}
			if info.Error.Retryable != want.retryable || !strings.Contains(info.Error.Message, want.message) ||
				info.Error.ErrorType != want.errorType {
				t.Errorf("error %+v, want retryable %v, message containing %q, type %q",
					*info.Error, want.retryable, want.message, want.errorType)
			}
			var got float64
			if h := info.OrchestrationMetadata; h != nil && h.BackoffHint != nil {
				got = h.BackoffHint.DelaySeconds
			}
			if got != want.backoff {
				t.Errorf("backoff hint %v s, want %v s", got, want.backoff)
			}
		})
	}
	// Two cases complete: raw and nulresult.
	if w.Processed() != uint64(len(cases)) || w.Failed() != uint64(len(cases)-2) {
		t.Errorf("processed %d failed %d, want %d %d", w.Processed(), w.Failed(), len(cases), len(cases)-2)
	}
	if n := queueLen(t, db); n != 0 {
		t.Errorf("%d dispatches left, want 0", n)
	}
}

func TestMalformedDispatchIsArchived(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	var calls atomic.Int32
	w.Handle("demo.square", func(context.Context, Step) (any, error) { calls.Add(1); return 1, nil })

	noCallable := newDispatch("")
	body, _ := json.Marshal(noCallable)
	ids := []int64{
		sendRaw(t, db, `[1, 2, 3]`),
		sendRaw(t, db, `{"task_uuid": "not-a-uuid"}`),
		sendRaw(t, db, string(body)),
		sendRaw(t, db, `{"task_uuid": "0195f29f-ffee-7abc-8def-0123456789ab"}`),
	}
	start(t, w)
	waitN(t, &w.testSignals.archived, len(ids), "the archiving")

	rows, err := db.Pool.Query(context.Background(), "SELECT msg_id FROM pgmq.a_worker_demo_queue ORDER BY msg_id")
	if err != nil {
		t.Fatal(err)
	}
	var archived []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		archived = append(archived, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(archived) != fmt.Sprint(ids) {
		t.Errorf("archived %v, want %v", archived, ids)
	}
	if n := queueLen(t, db); n != 0 {
		t.Errorf("%d left in the queue", n)
	}
	if rs := results(t, db); len(rs) != 0 {
		t.Errorf("%d results sent for malformed dispatches", len(rs))
	}
	if calls.Load() != 0 || w.Processed() != 4 || w.Failed() != 4 {
		t.Errorf("calls %d processed %d failed %d", calls.Load(), w.Processed(), w.Failed())
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	w.Concurrency = 2
	w.PollInterval = 20 * time.Millisecond

	var cur, peak atomic.Int32
	release := make(chan struct{})
	w.Handle("demo.block", func(ctx context.Context, _ Step) (any, error) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer cur.Add(-1)
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	const total = 5
	for range total {
		send(t, db, newDispatch("demo.block"))
	}
	start(t, w)
	waitN(t, &w.testSignals.started, 2, "two handlers")
	// Several looks at the free slots finding none: the worker must not claim a third message.
	for range 5 {
		for wait(t, &w.testSignals.capacity, "a look at the free slots") != 0 {
		}
	}
	if n := len(w.testSignals.started.C()); n != 0 {
		t.Fatalf("%d more handlers started with no free slot", n)
	}
	for done := 1; done <= total; done++ {
		release <- struct{}{} // frees exactly one handler
		wait(t, &w.testSignals.committed, "a result")
		if done <= total-2 {
			wait(t, &w.testSignals.started, "the next handler")
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
	for {
		select {
		case ev := <-w.testSignals.polled.C():
			if ev.Asked > 2 || ev.Claimed > ev.Asked {
				t.Errorf("a read asked for %d and claimed %d: more than the free slots", ev.Asked, ev.Claimed)
			}
			continue
		default:
		}
		break
	}
	if rs := results(t, db); len(rs) != total {
		t.Errorf("%d results, want %d", len(rs), total)
	}
}

// TestHeartbeatKeepsTheClaim: a handler running 2.5 visibility timeouts keeps its dispatch, a
// second worker polling all along never gets it, and exactly one result is sent.
func TestHeartbeatKeepsTheClaim(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a, b := newWorker(t, db), newWorker(t, db)
	for _, w := range []*Worker{a, b} {
		w.VisibilityTimeout = time.Second // heartbeat every 333ms
		w.PollInterval = 50 * time.Millisecond
		w.Concurrency = 1
	}
	release := make(chan struct{})
	var runs atomic.Int32
	h := func(ctx context.Context, _ Step) (any, error) {
		runs.Add(1)
		<-release
		return "ok", nil
	}
	a.Handle("demo.slow", h)
	b.Handle("demo.slow", h)

	msgID := send(t, db, newDispatch("demo.slow"))
	start(t, a)
	wait(t, &a.testSignals.started, "worker A's handler")
	claimed := time.Now()
	start(t, b)
	// Keep the handler busy for about 2.5 visibility timeouts, counted in heartbeats.
	waitN(t, &a.testSignals.heartbeat, 7, "heartbeats")
	if elapsed := time.Since(claimed); elapsed < 2*time.Second {
		t.Fatalf("7 heartbeats in %v: the interval is not VT/3", elapsed)
	}
	if rc := readCount(t, db, msgID); rc != 1 {
		t.Fatalf("read_ct %d while the handler runs, want 1 (never claimed again)", rc)
	}
	polls := len(b.testSignals.polled.C())
	if polls < 10 {
		t.Errorf("worker B polled only %d times", polls)
	}
	close(release)
	wait(t, &a.testSignals.committed, "the result")
	if n := len(b.testSignals.started.C()); n != 0 || runs.Load() != 1 {
		t.Errorf("handler ran %d times (worker B: %d), want once", runs.Load(), n)
	}
	if rs := results(t, db); len(rs) != 1 {
		t.Errorf("%d results, want 1", len(rs))
	}
}

// TestWithoutHeartbeatTheStepRunsTwice documents at-least-once execution: with no heartbeat a
// handler slower than the visibility timeout loses its claim, and a second worker runs the same
// attempt. The second worker to finish finds the dispatch deleted and drops its result, so one
// result is sent (a worker without that check would send two, which the orchestrator ignores).
func TestWithoutHeartbeatTheStepRunsTwice(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a, b := newWorker(t, db), newWorker(t, db)
	for _, w := range []*Worker{a, b} {
		w.VisibilityTimeout = time.Second
		w.HeartbeatInterval = -1
		w.PollInterval = 50 * time.Millisecond
		w.Concurrency = 1
	}
	release := make(chan struct{})
	var mu sync.Mutex
	var attempts []int
	h := func(ctx context.Context, s Step) (any, error) {
		mu.Lock()
		attempts = append(attempts, s.Attempt)
		mu.Unlock()
		<-release
		return s.ReadCount, nil
	}
	a.Handle("demo.slow", h)
	b.Handle("demo.slow", h)

	msgID := send(t, db, newDispatch("demo.slow"))
	start(t, a)
	wait(t, &a.testSignals.started, "worker A's handler")
	start(t, b)
	wait(t, &b.testSignals.started, "worker B's handler (after the visibility timeout)")
	if rc := readCount(t, db, msgID); rc != 2 {
		t.Errorf("read_ct %d, want 2", rc)
	}
	close(release)
	select {
	case <-a.testSignals.committed.C():
		wait(t, &b.testSignals.duplicate, "worker B's duplicate")
	case <-b.testSignals.committed.C():
		wait(t, &a.testSignals.duplicate, "worker A's duplicate")
	case <-time.After(waitLimit):
		t.Fatal("no result committed")
	}
	mu.Lock()
	if fmt.Sprint(attempts) != "[2 2]" {
		t.Errorf("attempts run %v, want the same attempt twice", attempts)
	}
	mu.Unlock()
	rs := results(t, db)
	if len(rs) != 1 || rs[0].Attempt != 2 {
		t.Errorf("results %+v, want one for attempt 2", rs)
	}
	if n := queueLen(t, db); n != 0 {
		t.Errorf("%d dispatches left", n)
	}
}

func TestGracefulShutdownFinishesRunningHandler(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	w.Concurrency = 1
	release := make(chan struct{})
	ctxErr := make(chan error, 1)
	w.Handle("demo.slow", func(ctx context.Context, _ Step) (any, error) {
		<-release
		ctxErr <- ctx.Err()
		return "finished", nil
	})
	msgID := send(t, db, newDispatch("demo.slow"))
	r := start(t, w)
	wait(t, &w.testSignals.started, "the handler")
	r.cancel()
	wait(t, &w.testSignals.stopping, "the shutdown")
	late := send(t, db, newDispatch("demo.slow")) // must not be claimed any more
	select {
	case err := <-r.errc:
		t.Fatalf("Run returned %v with a handler still running", err)
	default:
	}
	close(release)
	r.wait(t)
	if err := <-ctxErr; err != nil {
		t.Errorf("handler context cancelled at shutdown: %v", err)
	}
	if got := wait(t, &w.testSignals.committed, "the result"); got != msgID {
		t.Errorf("committed %d, want %d", got, msgID)
	}
	rs := results(t, db)
	if len(rs) != 1 || !jsonEqual(t, rs[0].Result.Result, `"finished"`) {
		t.Errorf("results %+v, want the finished step", rs)
	}
	if rc := readCount(t, db, late); rc != 0 {
		t.Errorf("the dispatch sent during shutdown was read %d times", rc)
	}
}

func TestShutdownTimeoutReleasesDispatch(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	w := newWorker(t, db)
	w.ShutdownTimeout = 100 * time.Millisecond
	w.Handle("demo.stubborn", func(ctx context.Context, _ Step) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	msgID := send(t, db, newDispatch("demo.stubborn"))
	r := start(t, w)
	wait(t, &w.testSignals.started, "the handler")
	r.stop(t)
	if got := wait(t, &w.testSignals.abandoned, "the release"); got != msgID {
		t.Errorf("released %d, want %d", got, msgID)
	}
	if rs := results(t, db); len(rs) != 0 {
		t.Errorf("%d results for a cut-off handler, want none", len(rs))
	}
	// Released: visible again at once, for another worker.
	msgs, err := pgmq.Read(context.Background(), db.Pool, testQueue, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != msgID || msgs[0].ReadCount != 2 {
		t.Errorf("read %+v, want the released dispatch", msgs)
	}
	if w.Processed() != 0 {
		t.Errorf("processed %d, want 0", w.Processed())
	}
}

// TestListenWakesWorker: with a poll interval of an hour, only NOTIFY can bring the dispatch.
func TestListenWakesWorker(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "worker-test"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	w := newWorker(t, db)
	w.Pool = pool
	w.ListenConnString = db.URL
	w.PollInterval = time.Hour
	w.Handle("demo.square", func(context.Context, Step) (any, error) { return 36, nil })
	r := start(t, w)
	defer r.stop(t)
	wait(t, &w.testSignals.listening, "LISTEN")
	// The connect asked for a (backlog) poll; once it has run, only a notification can wake
	// the loop.
	w.testSignals.pollRound.WaitFor(t, func(r poller.RoundEvent) bool { return r.Triggered })
	msgID := send(t, db, newDispatch("demo.square"))
	if got := wait(t, &w.testSignals.committed, "the result"); got != msgID {
		t.Errorf("committed %d, want %d", got, msgID)
	}

	var apps int
	if err := db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'worker-test-listener'",
		db.Name).Scan(&apps); err != nil {
		t.Fatal(err)
	}
	if apps != 1 {
		t.Errorf("%d connections named worker-test-listener, want 1", apps)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cases := map[string]struct {
		w    *Worker
		want string
	}{
		"no pool":         {&Worker{Namespace: "demo"}, "Pool is nil"},
		"no namespace":    {&Worker{Pool: pool}, "Namespace"},
		"bad namespace":   {&Worker{Pool: pool, Namespace: "Demo"}, "lower case"},
		"long namespace":  {&Worker{Pool: pool, Namespace: strings.Repeat("a", 30)}, "at most 29"},
		"heartbeat ≥ VT":  {&Worker{Pool: pool, Namespace: "demo", VisibilityTimeout: time.Second, HeartbeatInterval: time.Second}, "shorter than"},
		"negative conc":   {&Worker{Pool: pool, Namespace: "demo", Concurrency: -1}, "Concurrency"},
		"bad listen conn": {&Worker{Pool: pool, Namespace: "demo", ListenConnString: "postgres://%zz"}, "ListenConnString"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := c.w.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Run: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestHandlePanicsOnMisuse(t *testing.T) {
	t.Parallel()
	h := func(context.Context, Step) (any, error) { return nil, nil }
	for name, f := range map[string]func(w *Worker){
		"empty callable": func(w *Worker) { w.Handle("", h) },
		"nil handler":    func(w *Worker) { w.Handle("x", nil) },
		"twice":          func(w *Worker) { w.Handle("x", h); w.Handle("x", h) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f(&Worker{})
		})
	}
}

// Results that are ready together share one transaction; a dispatch that was deleted meanwhile
// (finished elsewhere) drops only its own result.
func TestResultsReadyTogetherCommitAsAGroup(t *testing.T) {
	db := newDB(t)
	w := newWorker(t, db)
	w.Concurrency = 8
	gate := make(chan struct{})
	w.Handle("demo.gated", func(ctx context.Context, step Step) (any, error) {
		<-gate
		return step.MsgID, nil
	})
	var ids []int64
	for range 8 {
		ids = append(ids, send(t, db, newDispatch("demo.gated")))
	}
	start(t, w)
	waitN(t, &w.testSignals.started, 8, "eight running handlers")
	// One dispatch is finished by someone else while its handler runs.
	if _, err := pgmq.Delete(context.Background(), db.Pool, testQueue, ids[3]); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitN(t, &w.testSignals.committed, 7, "seven results")
	if got := wait(t, &w.testSignals.duplicate, "the dropped duplicate"); got != ids[3] {
		t.Fatalf("duplicate = %d, want %d", got, ids[3])
	}
	res := results(t, db)
	if len(res) != 7 {
		t.Fatalf("results = %d, want 7", len(res))
	}
	var left int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgmq.q_"+testQueue).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d dispatches left in the queue", left)
	}
	if w.Processed() != 7 {
		t.Fatalf("processed = %d, want 7", w.Processed())
	}
}

// commitGroup itself: one statement deletes the dispatches it can and sends exactly their
// results, in order; a dispatch already gone is not reported deleted and sends no result. (The
// test above goes through the committer, which may also fall back to one commit per result.)
func TestCommitGroupSendsOnlyTheResultsWhoseDispatchItDeleted(t *testing.T) {
	db := newDB(t)
	w := newWorker(t, db)
	if err := w.validate(); err != nil {
		t.Fatal(err)
	}
	c := w.config()
	r := &run{w: w, c: c, log: w.Logger, dbCtx: context.Background()}
	ctx := context.Background()
	var group []resultReq
	for i := range 3 {
		id := send(t, db, newDispatch("demo.any"))
		body, _ := json.Marshal(messages.StepResult{TaskUUID: uuid.New(), StepUUID: uuid.New(), Attempt: 1,
			Result: messages.StepExecutionInfo{Success: true, Status: messages.StatusCompleted, Result: json.RawMessage(fmt.Sprint(i))}})
		group = append(group, resultReq{m: pgmq.Message{ID: id}, body: body, done: make(chan error, 1)})
	}
	if _, err := pgmq.Delete(ctx, db.Pool, testQueue, group[1].m.ID); err != nil {
		t.Fatal(err)
	}
	deleted, err := r.commitGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true} {
		if got := deleted[group[i].m.ID]; got != want {
			t.Fatalf("request %d: deleted %v, want %v", i, got, want)
		}
	}
	res := results(t, db)
	if len(res) != 2 || string(res[0].Result.Result) != "0" || string(res[1].Result.Result) != "2" {
		t.Fatalf("results = %+v, want those of requests 0 and 2", res)
	}
}
