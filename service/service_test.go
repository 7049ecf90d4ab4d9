package service

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/pipelinetest"
	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// harness is a service running on the shared pipeline test harness, with the test signals of
// its parts enabled.
type harness struct {
	*pipelinetest.Harness
	svc *Service
	run *pipelinetest.Running
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
	return startOn(pipelinetest.New(t, 10), mode, tweak...)
}

// startOn starts a service on p's database and handlers and, outside polling mode, waits until
// its listener listens.
func startOn(p *pipelinetest.Harness, mode config.Mode, tweak ...func(*config.Config)) *harness {
	p.T.Helper()
	cfg := testConfig(p.DB, mode)
	for _, f := range tweak {
		f(cfg)
	}
	svc, err := New(cfg, p.DB.Pool, p.Rec.Handlers(), p.Logger, nil)
	if err != nil {
		p.T.Fatal(err)
	}
	svc.testSignals.listening.Init()
	svc.actor.TestSignals.Finished.Init()
	svc.dispatcher.TestSignals.Handled.Init()
	svc.poller.TestSignals.Round.Init()
	h := &harness{Harness: p, svc: svc, run: pipelinetest.Start(p.T, svc.Run)}
	if svc.listener != nil {
		svc.testSignals.listening.WaitOrTimeout(p.T)
	}
	return h
}

// oneOfEach sends one message to each orchestration queue and returns the effect keys.
func (h *harness) oneOfEach(tag string) (request, step, final string) {
	task, stepID := uuid.New(), uuid.New()
	h.Send(messages.QueueTaskRequests, recorder.TaskRequest(tag, `{}`))
	h.Send(messages.QueueStepResults, json.RawMessage(fmt.Sprintf(
		`{"task_uuid":%q,"step_uuid":%q,"attempt":1,"result":{"success":true}}`, task, stepID)))
	h.Send(messages.QueueTaskFinalizations, json.RawMessage(fmt.Sprintf(`{"task_uuid":%q}`, task)))
	return tag, stepID.String(), task.String()
}

// waitProcessed waits until the actor has processed n messages (other outcomes, such as the not
// found of a late duplicate announcement, are skipped) and returns their outcomes.
func (h *harness) waitProcessed(n int) []commands.MessageOutcome {
	h.T.Helper()
	var got []commands.MessageOutcome
	for len(got) < n {
		if o := h.svc.actor.TestSignals.Finished.WaitOrTimeout(h.T); o.Outcome == commands.OutcomeProcessed {
			got = append(got, o)
		}
	}
	return got
}

// waitEffects waits until the three messages of oneOfEach are processed, then checks that each
// handler ran once and committed with its ack.
func (h *harness) waitEffects(request, step, final string) {
	h.T.Helper()
	h.waitProcessed(3)
	if h.Rec.Effects(h.T, "task", request) != 1 || h.Rec.Effects(h.T, "step", step) != 1 || h.Rec.Effects(h.T, "final", final) != 1 {
		h.T.Fatal("a handler did not run exactly once")
	}
	for _, q := range commands.Queues() {
		if n := h.QueueLen(q); n != 0 {
			h.T.Fatalf("queue %s holds %d messages after processing", q, n)
		}
	}
}

func TestEventDrivenDeliversThroughNotify(t *testing.T) {
	h := start(t, config.ModeEventDriven)
	// The backlog poll after the connect runs once; let it finish before sending, or it may
	// find what this test means to deliver through NOTIFY.
	h.svc.poller.TestSignals.Round.WaitOrTimeout(t)
	req, step, final := h.oneOfEach("notify")
	h.waitEffects(req, step, final)
	if got := h.svc.poller.Discovered(); got != 0 {
		t.Fatalf("the poller found %d messages in event_driven mode; want delivery through NOTIFY only", got)
	}
	if h.svc.listener.Received() < 3 {
		t.Fatalf("listener received %d notifications, want >= 3", h.svc.listener.Received())
	}
	if n := h.svc.poller.Cycles(); n != 1 {
		t.Fatalf("%d poll rounds in event_driven mode, want only the backlog poll", n)
	}
}

// A delivery that fails comes back after its visibility timeout in event_driven mode too, although
// no NOTIFY announces it again.
func TestEventDrivenRetriesAFailedMessageAfterItsVisibilityTimeout(t *testing.T) {
	h := start(t, config.ModeEventDriven, func(c *config.Config) { c.VisibilityTimeout = time.Second })
	h.svc.poller.TestSignals.Round.WaitOrTimeout(t)
	h.Send(messages.QueueTaskRequests, recorder.TaskRequest("flaky", `{"fail_until":2}`))
	first := h.svc.actor.TestSignals.Finished.WaitOrTimeout(t)
	if first.Outcome != commands.OutcomeFailed {
		t.Fatalf("first delivery: %v, want failed", first.Outcome)
	}
	if o := h.svc.actor.TestSignals.Finished.WaitOrTimeout(t); o.Outcome != commands.OutcomeProcessed || o.Ref != first.Ref {
		t.Fatalf("redelivery: %v of %v, want processed of %v", o.Outcome, o.Ref, first.Ref)
	}
	if h.Rec.Effects(t, "task", "flaky") != 1 {
		t.Fatal("the retried request must have taken effect once")
	}
}

func TestPollingDeliversWithoutListen(t *testing.T) {
	h := start(t, config.ModePolling)
	if h.svc.listener != nil {
		t.Fatal("polling mode must not LISTEN")
	}
	req, step, final := h.oneOfEach("poll")
	h.waitEffects(req, step, final)
	if h.svc.poller.Discovered() < 3 {
		t.Fatalf("poller found %d, want 3", h.svc.poller.Discovered())
	}
	var listeners int
	if err := h.DB.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'consumer-listener'", h.DB.Name).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 0 {
		t.Fatalf("%d LISTEN connections in polling mode", listeners)
	}
}

func TestListenerReconnectsAndCatchesUpAfterTermination(t *testing.T) {
	h := start(t, config.ModeEventDriven)
	ctx := context.Background()
	var killed int
	if err := h.DB.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND application_name = 'consumer-listener'`, h.DB.Name).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener backends, want 1", killed)
	}
	// Sent while the listener is (probably) down: its NOTIFY may be lost; the backlog poll
	// after the reconnect must find it.
	req, step, final := h.oneOfEach("while-down")
	h.svc.testSignals.listening.WaitOrTimeout(t) // reconnected
	if h.svc.listener.Reconnects() != 1 {
		t.Fatalf("Reconnects() = %d, want 1", h.svc.listener.Reconnects())
	}
	h.waitEffects(req, step, final)
	// And the new connection carries notifications again.
	req2, step2, final2 := h.oneOfEach("after")
	h.waitEffects(req2, step2, final2)
}

// Announcements of a message that is being processed, from NOTIFY and from a poll alike, are
// dropped by the dispatcher; the handler runs once, and nothing about it is an error.
func TestDuplicateAnnouncementsAndPollRunTheHandlerOnce(t *testing.T) {
	h := start(t, config.ModeHybrid)
	ctx := context.Background()
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("dup", `{"block":true}`))
	<-h.Rec.Entered // claimed and running: in flight until the handler returns
	payload := fmt.Sprintf(`{"event_type":"message_ready","queue_name":%q,"msg_id":%d}`, messages.QueueTaskRequests, id)
	for range 3 {
		if _, err := h.DB.Pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgmq.OrchestrationChannel, payload); err != nil {
			t.Fatal(err)
		}
	}
	h.svc.poller.TriggerAll() // the running batch's claim is not committed: the poll finds the message too
	h.svc.dispatcher.TestSignals.Handled.WaitFor(t, func(commands.Notification) bool { return h.svc.dispatcher.Duplicates() >= 4 })
	close(h.Rec.Gate)
	if o := h.waitProcessed(1)[0]; o.Ref.MsgID != id {
		t.Fatalf("processed %+v, want message %d", o.Ref, id)
	}
	if n := h.Rec.Effects(t, "task", "dup"); n != 1 {
		t.Fatalf("handler effects = %d, want 1", n)
	}
	if errs := h.ErrorLogs(); len(errs) != 0 {
		t.Fatalf("%d error logs for normal race outcomes: %v", len(errs), errs)
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

// SIGTERM lets the running handler finish; what never started holds no claim, so the next
// start (here in polling mode) processes it at once, not one visibility timeout later.
func TestSIGTERMDrainsInFlightAndNextStartFinishesTheRest(t *testing.T) {
	p := pipelinetest.New(t, 10)
	oneAtATime := func(c *config.Config) { c.Concurrency, c.BatchSize = 1, 1 }
	first := startOn(p, config.ModeHybrid, oneAtATime)
	p.Send(messages.QueueTaskRequests, recorder.TaskRequest("slow", `{"block":true}`))
	burst := make([]string, 20)
	for i := range burst {
		burst[i] = fmt.Sprintf("burst-%d", i)
		p.Send(messages.QueueTaskRequests, recorder.TaskRequest(burst[i], `{}`))
	}
	<-p.Rec.Entered
	first.run.Stop() // SIGTERM
	close(p.Rec.Gate)
	if err := first.run.Wait(t); err != nil {
		t.Fatal(err)
	}
	if p.Rec.Effects(t, "task", "slow") != 1 {
		t.Fatal("the in-flight handler did not finish")
	}

	left := 0
	for _, key := range burst {
		left += 1 - p.Rec.Effects(t, "task", key)
	}
	next := startOn(p, config.ModePolling, oneAtATime)
	next.waitProcessed(left)
	for _, key := range burst {
		if n := p.Rec.Effects(t, "task", key); n != 1 {
			t.Fatalf("%s processed %d times, want once", key, n)
		}
	}
}
