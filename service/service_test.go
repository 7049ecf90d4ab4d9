package service

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

type harness struct {
	t    *testing.T
	db   *testdb.DB
	rec  *recorder.Recorder
	svc  *Service
	logs *observer.ObservedLogs
	stop context.CancelFunc
	done chan error
}

func testConfig(db *testdb.DB, mode config.Mode) *config.Config {
	return &config.Config{
		DatabaseURL: db.URL, ListenDatabaseURL: db.URL, Mode: mode,
		VisibilityTimeout: 30 * time.Second, PollInterval: 200 * time.Millisecond, PollBatchSize: 100,
		Concurrency: 4, MaxReadCount: 5, CommandBuffer: 100, NotifyBuffer: 100, ShutdownTimeout: 10 * time.Second,
		BatchSize: 16, DBMaxConns: 8, ListenerPing: 15 * time.Second, ReconnectMax: 500 * time.Millisecond,
		LogLevel: "debug", LogFormat: "json",
	}
}

func start(t *testing.T, mode config.Mode, tweak ...func(*config.Config)) *harness {
	t.Helper()
	db := testdb.New(t, 10)
	cfg := testConfig(db, mode)
	for _, f := range tweak {
		f(cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	rec := recorder.New(t, db.Pool)
	svc, err := New(cfg, db.Pool, rec.Handlers(), zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, db: db, rec: rec, svc: svc, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { h.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("service: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("service did not stop")
		}
	})
	if svc.listener != nil {
		h.eventually("listener connected", svc.listener.Connected)
	}
	return h
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) send(queue string, body json.RawMessage) int64 {
	h.t.Helper()
	id, err := pgmq.Send(context.Background(), h.db.Pool, queue, body, pgmq.SendOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) queueLen(queue string) int {
	h.t.Helper()
	var n int
	if err := h.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgmq.q_"+queue).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// oneOfEach sends one message to each orchestration queue and returns the effect keys.
func (h *harness) oneOfEach(tag string) (request, step, final string) {
	task, stepID := uuid.New(), uuid.New()
	h.send(messages.QueueTaskRequests, recorder.TaskRequest(tag, `{}`))
	h.send(messages.QueueStepResults, json.RawMessage(fmt.Sprintf(
		`{"task_uuid":%q,"step_uuid":%q,"attempt":1,"result":{"success":true}}`, task, stepID)))
	h.send(messages.QueueTaskFinalizations, json.RawMessage(fmt.Sprintf(`{"task_uuid":%q}`, task)))
	return tag, stepID.String(), task.String()
}

func (h *harness) waitEffects(request, step, final string) {
	h.t.Helper()
	h.eventually("all three handlers ran", func() bool {
		return h.rec.Effects(h.t, "task", request) == 1 && h.rec.Effects(h.t, "step", step) == 1 && h.rec.Effects(h.t, "final", final) == 1
	})
	for _, q := range commands.Queues() {
		h.eventually("queue "+q+" empty", func() bool { return h.queueLen(q) == 0 })
	}
}

func TestEventDrivenDeliversThroughNotify(t *testing.T) {
	h := start(t, config.ModeEventDriven)
	// The backlog poll after the connect runs once; let it finish before sending, or it may
	// claim what this test means to deliver through NOTIFY.
	h.eventually("the backlog poll after connecting", func() bool { return h.svc.poller.Cycles() >= 1 })
	backlogClaims := h.svc.poller.Claimed()
	req, step, final := h.oneOfEach("notify")
	h.waitEffects(req, step, final)
	if got := h.svc.poller.Claimed(); got != backlogClaims {
		t.Fatalf("the poller claimed %d messages in event_driven mode; want delivery through NOTIFY only", got-backlogClaims)
	}
	if h.svc.listener.Received() < 3 {
		t.Fatalf("listener received %d notifications, want >= 3", h.svc.listener.Received())
	}
	// Exactly once: no handler ran twice.
	if n := h.rec.Effects(t, "task", req); n != 1 {
		t.Fatalf("task effects = %d", n)
	}
}

func TestPollingDeliversWithoutListen(t *testing.T) {
	h := start(t, config.ModePolling)
	if h.svc.listener != nil {
		t.Fatal("polling mode must not LISTEN")
	}
	req, step, final := h.oneOfEach("poll")
	h.waitEffects(req, step, final)
	if h.svc.poller.Claimed() < 3 {
		t.Fatalf("poller claimed %d, want 3", h.svc.poller.Claimed())
	}
	var listeners int
	if err := h.db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'consumer-listener'", h.db.Name).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 0 {
		t.Fatalf("%d LISTEN connections in polling mode", listeners)
	}
}

func TestListenerReconnectsAndCatchesUpAfterTermination(t *testing.T) {
	h := start(t, config.ModeEventDriven)
	ctx := context.Background()
	before := h.svc.listener.Reconnects()
	var killed int
	if err := h.db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND application_name = 'consumer-listener'`, h.db.Name).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener backends, want 1", killed)
	}
	// Sent while the listener is (probably) down: its NOTIFY may be lost; the backlog poll
	// after the reconnect must find it.
	req, step, final := h.oneOfEach("while-down")
	h.eventually("listener reconnected", func() bool { return h.svc.listener.Reconnects() > before && h.svc.listener.Connected() })
	h.waitEffects(req, step, final)
	// And the new connection carries notifications again.
	req2, step2, final2 := h.oneOfEach("after")
	h.waitEffects(req2, step2, final2)
}

func TestDuplicateAnnouncementsAndPollRunTheHandlerOnce(t *testing.T) {
	h := start(t, config.ModeHybrid)
	ctx := context.Background()
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("dup", `{}`))
	payload := fmt.Sprintf(`{"event_type":"message_ready","queue_name":%q,"msg_id":%d}`, messages.QueueTaskRequests, id)
	for range 3 {
		if _, err := h.db.Pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgmq.OrchestrationChannel, payload); err != nil {
			t.Fatal(err)
		}
	}
	h.svc.poller.TriggerAll()
	h.eventually("request handled", func() bool { return h.rec.Effects(t, "task", "dup") == 1 })
	h.eventually("every announcement accounted for", func() bool {
		s, err := h.svc.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := s.ByKind["task_request"]
		return k.Processed == 1 && k.NotFound+h.svc.dispatcher.Duplicates() >= 3
	})
	if n := h.rec.Effects(t, "task", "dup"); n != 1 {
		t.Fatalf("handler effects = %d, want 1", n)
	}
	if n := h.logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("%d error logs for normal race outcomes: %v", n, h.logs.FilterLevelExact(zapcore.ErrorLevel).All())
	}
}

func TestReadyReportsEachCheck(t *testing.T) {
	h := start(t, config.ModeHybrid)
	r := h.svc.Ready(context.Background())
	if !r.Ready || !r.Checks["database"].OK || !r.Checks["actor"].OK || !r.Checks["listener"].OK || r.Health == nil {
		t.Fatalf("ready report = %+v", r)
	}
	if r.Health.Status != commands.HealthHealthy {
		t.Fatalf("health = %+v", r.Health)
	}
}

func TestSIGTERMDrainsInFlightAndNextStartFinishesTheRest(t *testing.T) {
	db := testdb.New(t, 10)
	rec := recorder.New(t, db.Pool)
	run := func(ctx context.Context, mode config.Mode) (*Service, chan error) {
		cfg := testConfig(db, mode)
		cfg.Concurrency, cfg.BatchSize = 1, 1
		svc, err := New(cfg, db.Pool, rec.Handlers(), zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		return svc, done
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, done := run(ctx, config.ModeHybrid)
	ids := []int64{}
	send := func(body json.RawMessage) {
		id, err := pgmq.Send(context.Background(), db.Pool, messages.QueueTaskRequests, body, pgmq.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	send(recorder.TaskRequest("slow", `{"block":true}`))
	for i := range 20 {
		send(recorder.TaskRequest(fmt.Sprintf("burst-%d", i), `{}`))
	}
	<-rec.Entered
	cancel() // SIGTERM
	close(rec.Gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("service did not stop within its shutdown timeout")
	}
	if rec.Effects(t, "task", "slow") != 1 {
		t.Fatal("the in-flight handler did not finish")
	}
	// The next start processes whatever is left; nothing is lost. Claims of the first run may
	// hold some messages for their visibility timeout, so shorten it for this check.
	if _, err := db.Pool.Exec(context.Background(), "UPDATE pgmq.q_orchestration_task_requests SET vt = clock_timestamp()"); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, done2 := run(ctx2, config.ModePolling)
	deadline := time.Now().Add(15 * time.Second)
	for i := range 20 {
		for rec.Effects(t, "task", fmt.Sprintf("burst-%d", i)) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("burst-%d never processed exactly once", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel2()
	<-done2
}
