package actor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zapcore"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/pipelinetest"
	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// harness is an actor running on the shared pipeline test harness.
type harness struct {
	*pipelinetest.Harness
	cmds *commands.CommandChannel
	act  *actor.Actor
	run  *pipelinetest.Running
}

type option func(*actor.Config)

func start(t *testing.T, opts ...option) *harness {
	t.Helper()
	return startOn(pipelinetest.New(t, 8), opts...)
}

// startOn starts an actor on p's database and handlers (a second start is a restart, or a
// second consumer).
func startOn(p *pipelinetest.Harness, opts ...option) *harness {
	p.T.Helper()
	cmds := commands.NewCommandChannel(100)
	cfg := actor.Config{
		Pool: p.DB.Pool, Commands: cmds, Handlers: p.Rec.Handlers(),
		MaxReadCount: 3, Concurrency: 4, BatchSize: 16, ShutdownTimeout: 10 * time.Second, Logger: p.Logger,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := actor.New(cfg)
	if err != nil {
		p.T.Fatal(err)
	}
	a.TestSignals.Finished.Init()
	a.TestSignals.ReplyDropped.Init()
	return &harness{Harness: p, cmds: cmds, act: a, run: pipelinetest.Start(p.T, a.Run)}
}

// process asks the actor to claim and handle a message, and waits for its outcome.
func (h *harness) process(queue string, id int64) commands.MessageOutcome {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testsignal.Timeout)
	defer cancel()
	out, err := commands.Request(ctx, h.cmds, func(r commands.Responder[commands.MessageOutcome]) commands.Command {
		return commands.ProcessMessage{Kind: commands.KindForQueue(queue), Queue: queue, MsgID: id, ReceivedAt: time.Now(), Reply: r}
	})
	if err != nil {
		h.T.Fatalf("process %s/%d: %v", queue, id, err)
	}
	return out
}

// processAll processes the messages concurrently, so that they can share batches, and returns
// their outcomes by id.
func (h *harness) processAll(queue string, ids ...int64) map[int64]commands.MessageOutcome {
	h.T.Helper()
	replies := make(chan commands.MessageOutcome, len(ids))
	for _, id := range ids {
		go func() { replies <- h.process(queue, id) }()
	}
	got := make(map[int64]commands.MessageOutcome, len(ids))
	for range ids {
		o := <-replies
		got[o.Ref.MsgID] = o
	}
	return got
}

// enqueue hands the actor a message without waiting for its outcome.
func (h *harness) enqueue(queue string, id int64) {
	h.T.Helper()
	cmd := commands.ProcessMessage{Kind: commands.KindForQueue(queue), Queue: queue, MsgID: id, ReceivedAt: time.Now()}
	if err := h.cmds.Send(context.Background(), cmd); err != nil {
		h.T.Fatal(err)
	}
}

func TestMessageIsClaimedHandledAndAckedTogether(t *testing.T) {
	h := start(t)
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("r1", `{"n":1}`))
	out := h.process(messages.QueueTaskRequests, id)
	if out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("outcome = %v (%s, %v), want processed", out.Outcome, out.Detail, out.Err)
	}
	if n := h.Rec.Effects(t, "task", "r1"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	if n := h.QueueLen(messages.QueueTaskRequests); n != 0 {
		t.Fatalf("queue length after ack = %d, want 0", n)
	}
	// Announced again after the ack: nothing to claim, a normal outcome, not an error.
	again := h.process(messages.QueueTaskRequests, id)
	if again.Outcome != commands.OutcomeNotFound {
		t.Fatalf("second outcome = %v, want not_found", again.Outcome)
	}
	if n := h.Rec.Effects(t, "task", "r1"); n != 1 {
		t.Fatalf("effects after duplicate = %d, want 1", n)
	}
	if errs := h.Logs.FilterLevelExact(zapcore.ErrorLevel).Len(); errs != 0 {
		t.Fatalf("error logs = %d, want 0: %v", errs, h.Logs.All())
	}
	snap := h.act.Stats().Snapshot().ByKind["task_request"]
	if snap.Processed != 1 || snap.NotFound != 1 || snap.Failed != 0 {
		t.Fatalf("stats = %+v, want processed 1, not_found 1", snap)
	}
}

func TestEachKindRoutesToItsHandler(t *testing.T) {
	h := start(t)
	task, step := uuid.New(), uuid.New()
	res := h.Send(messages.QueueStepResults, json.RawMessage(fmt.Sprintf(
		`{"task_uuid":%q,"step_uuid":%q,"attempt":1,"result":{"success":true,"result":{"v":1}}}`, task, step)))
	fin := h.Send(messages.QueueTaskFinalizations, json.RawMessage(fmt.Sprintf(`{"task_uuid":%q}`, task)))
	if out := h.process(messages.QueueStepResults, res); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("step result outcome = %v (%v)", out.Outcome, out.Err)
	}
	if out := h.process(messages.QueueTaskFinalizations, fin); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("finalization outcome = %v (%v)", out.Outcome, out.Err)
	}
	if h.Rec.Effects(t, "step", step.String()) != 1 || h.Rec.Effects(t, "final", task.String()) != 1 {
		t.Fatal("step or finalization handler did not run exactly once")
	}
}

func TestHandlerFailureRollsBackAndRedelivers(t *testing.T) {
	h := start(t)
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("flaky", `{"fail_until":2}`))
	first := h.process(messages.QueueTaskRequests, id)
	if first.Outcome != commands.OutcomeFailed {
		t.Fatalf("first outcome = %v, want failed", first.Outcome)
	}
	if n := h.Rec.Effects(t, "task", "flaky"); n != 0 {
		t.Fatalf("effects of a failed handler = %d, want 0 (rolled back)", n)
	}
	if n := h.ReadCount(messages.QueueTaskRequests, id); n != 1 {
		t.Fatalf("read_ct after a failed delivery = %d, want 1 (the claim must stand)", n)
	}
	// Invisible until the visibility timeout passes.
	if early := h.process(messages.QueueTaskRequests, id); early.Outcome != commands.OutcomeNotFound {
		t.Fatalf("outcome before vt = %v, want not_found", early.Outcome)
	}
	h.ExpireVT(messages.QueueTaskRequests, id)
	second := h.process(messages.QueueTaskRequests, id)
	if second.Outcome != commands.OutcomeProcessed {
		t.Fatalf("redelivery outcome = %v (%v), want processed", second.Outcome, second.Err)
	}
	if n := h.Rec.Effects(t, "task", "flaky"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	failures := h.Logs.FilterMessage("message failed; it will be redelivered").All()
	if len(failures) != 1 {
		t.Fatalf("failure log lines = %d, want 1", len(failures))
	}
	fields := failures[0].ContextMap()
	if fields["queue"] != messages.QueueTaskRequests || fields["msg_id"] != id || fields["correlation_id"] == nil {
		t.Fatalf("failure log fields = %v, want queue, msg_id and correlation_id", fields)
	}
}

func TestAlwaysFailingMessageIsDeadLetteredAfterMaxReadCount(t *testing.T) {
	h := start(t) // MaxReadCount 3
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("doomed", `{"fail":true}`))
	var outcomes []commands.Outcome
	for i := range 3 {
		if i > 0 {
			h.ExpireVT(messages.QueueTaskRequests, id)
		}
		outcomes = append(outcomes, h.process(messages.QueueTaskRequests, id).Outcome)
	}
	want := []commands.Outcome{commands.OutcomeFailed, commands.OutcomeFailed, commands.OutcomeDeadLettered}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Fatalf("outcomes = %v, want %v", outcomes, want)
	}
	if n := h.QueueLen(messages.QueueTaskRequests); n != 0 {
		t.Fatalf("source queue length = %d, want 0", n)
	}
	dl := h.DeadLetters()
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	d := dl[0]
	if d.SourceQueue != messages.QueueTaskRequests || d.SourceMsgID != id || d.ReadCount != 3 ||
		d.Reason != messages.ReasonRetriesExceeded || !strings.Contains(d.Error, "injected failure") ||
		!strings.Contains(string(d.Message), `"doomed"`) {
		t.Fatalf("dead letter = %+v", d)
	}
	if n := h.Rec.Attempts.Load(); n != 3 {
		t.Fatalf("handler attempts = %d, want 3", n)
	}
}

func TestReadCountAboveMaxIsDeadLetteredWithoutRunningTheHandler(t *testing.T) {
	h := start(t)
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("crashy", `{}`))
	// Deliveries that never finished (a consumer crashing mid-handler) still count.
	if _, err := h.DB.Pool.Exec(context.Background(), "UPDATE pgmq.q_orchestration_task_requests SET read_ct = 3 WHERE msg_id = $1", id); err != nil {
		t.Fatal(err)
	}
	out := h.process(messages.QueueTaskRequests, id)
	if out.Outcome != commands.OutcomeDeadLettered || out.Detail != messages.ReasonMaxReadCount {
		t.Fatalf("outcome = %v %q, want dead_lettered %s", out.Outcome, out.Detail, messages.ReasonMaxReadCount)
	}
	if h.Rec.Attempts.Load() != 0 {
		t.Fatal("handler ran for a message above the read count")
	}
}

func TestMalformedMessagesAreDeadLetteredAtOnceWhileOthersFlow(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	ctx := context.Background()
	// Not JSON at all can't go through pgmq.send's jsonb; a JSON string is the closest a
	// producer can get. Also a wrong shape and a missing field.
	badJSON := h.Send(q, json.RawMessage(`"just a string"`))
	wrongType := h.Send(q, json.RawMessage(`{"task_request":{"namespace":"demo","name":"linear","version":"1.0.0","context":[1,2]}}`))
	missing := h.Send(q, json.RawMessage(`{"task_request":{"name":"linear","version":"1.0.0","context":{}}}`))
	good := h.Send(q, recorder.TaskRequest("good", `{}`))

	got := h.processAll(q, badJSON, wrongType, missing, good)
	if got[good].Outcome != commands.OutcomeProcessed {
		t.Fatalf("good message outcome = %v (%v)", got[good].Outcome, got[good].Err)
	}
	for _, id := range []int64{badJSON, wrongType, missing} {
		if got[id].Outcome != commands.OutcomeDeadLettered {
			t.Fatalf("msg %d outcome = %v, want dead_lettered", id, got[id].Outcome)
		}
	}
	if !strings.Contains(got[wrongType].Err.Error(), "task_request.context") {
		t.Fatalf("wrong type error %q does not name the field", got[wrongType].Err)
	}
	if !strings.Contains(got[missing].Err.Error(), "task_request.namespace") {
		t.Fatalf("missing field error %q does not name the field", got[missing].Err)
	}
	if n := h.QueueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
	if dl := h.DeadLetters(); len(dl) != 3 {
		t.Fatalf("dead letters = %d, want 3", len(dl))
	}
	var reasons []string
	rows, _ := h.DB.Pool.Query(ctx, "SELECT message->>'reason' FROM pgmq.q_orchestration_dlq ORDER BY (message->>'source_msg_id')::bigint")
	reasons, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if reasons[0] != messages.ReasonValidation || reasons[1] != messages.ReasonValidation {
		t.Fatalf("reasons = %v", reasons)
	}
	if n := len(h.Logs.FilterMessage("message dead-lettered").All()); n != 3 {
		t.Fatalf("dead-letter log lines = %d, want exactly one per message (3)", n)
	}
}

func TestOneFailureInABatchDoesNotUndoTheOthers(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	ids := []int64{
		h.Send(q, recorder.TaskRequest("a", `{}`)),
		h.Send(q, recorder.TaskRequest("b", `{"fail":true}`)),
		h.Send(q, recorder.TaskRequest("c", `{"panic":true}`)),
		h.Send(q, recorder.TaskRequest("d", `{"permanent":true}`)),
		h.Send(q, recorder.TaskRequest("e", `{}`)),
	}
	got := map[int64]commands.Outcome{}
	for id, o := range h.processAll(q, ids...) {
		got[id] = o.Outcome
	}
	want := []commands.Outcome{commands.OutcomeProcessed, commands.OutcomeFailed, commands.OutcomeFailed, commands.OutcomeDeadLettered, commands.OutcomeProcessed}
	for i, id := range ids {
		if got[id] != want[i] {
			t.Fatalf("message %d outcome = %v, want %v (all: %v)", i, got[id], want[i], got)
		}
	}
	for key, n := range map[string]int{"a": 1, "b": 0, "c": 0, "d": 0, "e": 1} {
		if got := h.Rec.Effects(t, "task", key); got != n {
			t.Fatalf("effects of %s = %d, want %d", key, got, n)
		}
	}
	if n := h.QueueLen(q); n != 2 {
		t.Fatalf("queue length = %d, want 2 (the two failures wait for redelivery)", n)
	}
}

func TestClaimUsesTheConfiguredVisibilityTimeout(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.VisibilityTimeout = 42 * time.Second })
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("vt", `{"fail":true}`))
	if out := h.process(messages.QueueTaskRequests, id); out.Outcome != commands.OutcomeFailed {
		t.Fatalf("outcome = %v", out.Outcome)
	}
	var secs float64
	if err := h.DB.Pool.QueryRow(context.Background(),
		"SELECT extract(epoch FROM vt - clock_timestamp()) FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1", id).Scan(&secs); err != nil {
		t.Fatal(err)
	}
	if secs < 40 || secs > 42.5 {
		t.Fatalf("vt is %.1fs ahead, want about 42s", secs)
	}
}

func TestDroppedReplyReceiverIsLoggedAtError(t *testing.T) {
	h := start(t)
	id := h.Send(messages.QueueTaskRequests, recorder.TaskRequest("orphan", `{}`))
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	resp, _ := commands.NewResponder[commands.MessageOutcome](gone)
	if err := h.cmds.Send(context.Background(), commands.ProcessMessage{
		Kind: commands.KindTaskRequest, Queue: messages.QueueTaskRequests, MsgID: id, ReceivedAt: time.Now(), Reply: resp,
	}); err != nil {
		t.Fatal(err)
	}
	if what := h.act.TestSignals.ReplyDropped.WaitOrTimeout(t); what != "task_request" {
		t.Fatalf("dropped reply of %q, want task_request", what)
	}
	entries := h.Logs.FilterMessage("reply dropped: the requester stopped waiting before the reply was sent").All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel {
		t.Fatalf("log lines %v, want one at error level", entries)
	}
	// The work itself was done and acknowledged.
	if out := h.act.TestSignals.Finished.WaitOrTimeout(t); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("outcome %v, want processed", out.Outcome)
	}
	if h.Rec.Effects(t, "task", "orphan") != 1 || h.QueueLen(messages.QueueTaskRequests) != 0 {
		t.Fatal("the message was not processed")
	}
}

func TestStatsAndHealthCommands(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	h.process(q, h.Send(q, recorder.TaskRequest("s1", `{}`)))
	h.process(q, h.Send(q, recorder.TaskRequest("s2", `{"permanent":true}`)))
	h.process(q, 999999)
	h.Send(q, recorder.TaskRequest("waiting", `{}`)) // left in the queue: depth 1

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := commands.Request(ctx, h.cmds, func(r commands.Responder[commands.StatsSnapshot]) commands.Command {
		return commands.GetProcessingStats{Reply: r}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.ByKind["task_request"]; got.Processed != 1 || got.DeadLettered != 1 || got.NotFound != 1 {
		t.Fatalf("stats = %+v", got)
	}
	if snap.Total.Processed != 1 {
		t.Fatalf("total = %+v", snap.Total)
	}
	health, err := commands.Request(ctx, h.cmds, func(r commands.Responder[commands.SystemHealth]) commands.Command {
		return commands.HealthCheck{Reply: r}
	})
	if err != nil {
		t.Fatal(err)
	}
	if health.Status != commands.HealthHealthy || !health.DatabaseConnected || !health.QueuesHealthy ||
		health.WorstQueue != q || health.WorstQueueDepth != 1 || health.DLQDepth != 1 ||
		health.QueueDepthTier != commands.DepthNormal || health.BackpressureActive {
		t.Fatalf("health = %+v", health)
	}
	b, _ := json.Marshal(health)
	for _, field := range []string{`"status":"healthy"`, `"database_connected":true`, `"queue_depth_tier":"normal"`, `"command_channel_saturation"`, `"backpressure_active":false`, `"worst_queue":"orchestration_task_requests"`} {
		if !strings.Contains(string(b), field) {
			t.Fatalf("health JSON %s lacks %s", b, field)
		}
	}
}

func TestShutdownFinishesInFlightAndLeavesTheRestForTheNextStart(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 1 })
	q := messages.QueueTaskRequests
	blocked := h.Send(q, recorder.TaskRequest("inflight", `{"block":true}`))
	var rest []int64
	for i := range 5 {
		rest = append(rest, h.Send(q, recorder.TaskRequest(fmt.Sprintf("later-%d", i), `{}`)))
	}
	for _, id := range append([]int64{blocked}, rest...) {
		h.enqueue(q, id)
	}
	<-h.Rec.Entered // the first handler is running
	h.run.Stop()    // SIGTERM: stop intake
	select {
	case <-h.run.Done():
		t.Fatal("actor returned while a handler was still in flight")
	default:
	}
	close(h.Rec.Gate) // let the in-flight handler finish
	if err := h.run.Wait(t); err != nil {
		t.Fatal(err)
	}
	if h.Rec.Effects(t, "task", "inflight") != 1 {
		t.Fatal("in-flight handler's work was not committed")
	}
	if n := h.QueueLen(q); n != 5 {
		t.Fatalf("queue length after shutdown = %d, want the 5 unstarted messages", n)
	}
	// Unstarted messages were never claimed: the next start takes them at once.
	for _, id := range rest {
		if n := h.ReadCount(q, id); n != 0 {
			t.Fatalf("msg %d: read_ct %d after shutdown, want 0", id, n)
		}
	}
	h2 := startOn(h.Harness)
	for id, out := range h2.processAll(q, rest...) {
		if out.Outcome != commands.OutcomeProcessed {
			t.Fatalf("after restart: msg %d outcome = %v", id, out.Outcome)
		}
	}
	if n := h2.QueueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}

func TestShutdownTimeoutCancelsStuckHandlers(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	q := messages.QueueTaskRequests
	id := h.Send(q, recorder.TaskRequest("stuck", `{"block":true}`))
	h.enqueue(q, id)
	<-h.Rec.Entered
	h.run.Stop()
	if err := h.run.Wait(t); err != nil { // it returns only because the timeout cancelled the handler
		t.Fatal(err)
	}
	if h.Rec.Effects(t, "task", "stuck") != 0 || h.QueueLen(q) != 1 {
		t.Fatal("a cancelled handler's work must roll back and its message stay queued")
	}
	if n := h.ReadCount(q, id); n != 0 {
		t.Fatalf("read_ct = %d after a rolled-back batch, want 0 (its claim is undone)", n)
	}
}

// A message claimed elsewhere is not found until that claim's visibility timeout runs out;
// then the actor claims it afresh. A claim held by a running batch is never taken over, even by
// a handler slower than the visibility timeout: the claim is made in the batch transaction, so
// the message stays locked until the batch ends (other sessions see it visible but locked, and
// skip it), a second consumer finds nothing to claim, and the handler runs once (regression:
// the chaos suite's stall scenario ran messages twice and dead-lettered valid ones).
func TestClaimsAreNeverTakenOver(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.VisibilityTimeout = time.Second })
	ctx := context.Background()
	q := messages.QueueTaskRequests

	elsewhere := h.Send(q, recorder.TaskRequest("elsewhere", `{}`))
	if msgs, err := pgmq.Read(ctx, h.DB.Pool, q, 30*time.Second, 1); err != nil || len(msgs) != 1 {
		t.Fatalf("claim elsewhere: %v %v", msgs, err)
	}
	if out := h.process(q, elsewhere); out.Outcome != commands.OutcomeNotFound {
		t.Fatalf("outcome while claimed elsewhere = %v, want not_found", out.Outcome)
	}
	h.ExpireVT(q, elsewhere)
	if out := h.process(q, elsewhere); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("outcome after the other claim expired = %v, want processed", out.Outcome)
	}

	stalled := h.Send(q, recorder.TaskRequest("stalled", `{"block":true}`))
	h.enqueue(q, stalled)
	<-h.Rec.Entered // claimed with a 1s visibility timeout, and the handler waits
	other := startOn(h.Harness)
	if out := other.process(q, stalled); out.Outcome != commands.OutcomeNotFound {
		t.Fatalf("second consumer's outcome = %v, want not_found", out.Outcome)
	}
	if msgs, err := pgmq.Read(ctx, h.DB.Pool, q, 30*time.Second, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("pgmq.read took %v (%v) from a running batch", msgs, err)
	}
	close(h.Rec.Gate)
	if out := h.act.TestSignals.Finished.WaitFor(t, func(o commands.MessageOutcome) bool { return o.Ref.MsgID == stalled }); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("stalled message outcome = %v, want processed", out.Outcome)
	}
	if n := h.Rec.Effects(t, "task", "stalled"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	if n := h.QueueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}

// A busy actor still answers health checks at once on its control channel (regression: the
// health command queued behind the work and /readyz failed while the consumer was healthy).
func TestHealthAnswersWhileBusy(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 1 })
	q := messages.QueueTaskRequests
	blocked := h.Send(q, recorder.TaskRequest("busy", `{"block":true}`))
	h.enqueue(q, blocked)
	for i := range 60 {
		h.enqueue(q, h.Send(q, recorder.TaskRequest(fmt.Sprintf("queued-%d", i), `{}`)))
	}
	<-h.Rec.Entered // the only slot is busy; the rest is queued
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	health, err := commands.Request(ctx, h.act.Control(), func(r commands.Responder[commands.SystemHealth]) commands.Command {
		return commands.HealthCheck{Reply: r}
	})
	if err != nil {
		t.Fatalf("health check while busy: %v", err)
	}
	if !health.DatabaseConnected || health.CommandChannelSaturation == 0 {
		t.Fatalf("health = %+v", health)
	}
	close(h.Rec.Gate)
}

// A value the database refuses fails the same way on every delivery: dead-lettered at once
// (regression: an over-long request_id was retried until MaxReadCount).
func TestDataTheDatabaseRefusesIsDeadLetteredAtOnce(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	id := h.Send(q, recorder.TaskRequest("bad-data", `{"bad_data":true}`))
	out := h.process(q, id)
	if out.Outcome != commands.OutcomeDeadLettered || out.Detail != messages.ReasonPermanentError {
		t.Fatalf("outcome = %v %q (%v), want dead_lettered %s", out.Outcome, out.Detail, out.Err, messages.ReasonPermanentError)
	}
	if dl := h.DeadLetters(); len(dl) != 1 || dl[0].ReadCount != 1 || !strings.Contains(dl[0].Error, "22P02") {
		t.Fatalf("dead letters = %+v", dl)
	}
}

// A message that fails the handler's call as a whole (here: data the database refuses) is
// isolated by bisecting the batch: every other message of the batch gets its outcome, with a
// few calls of the handler, not one per message.
func TestPoisonedMessageIsIsolatedByBisection(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 16 })
	rec := h.Rec
	q := messages.QueueTaskRequests
	blocker := h.Send(q, recorder.TaskRequest("blocker", `{"block":true}`))
	h.enqueue(q, blocker)
	<-rec.Entered // the only slot is taken: the next messages queue up into one batch
	const n, poisoned = 8, 5
	ids := make([]int64, n)
	for i := range ids {
		steer := `{}`
		if i == poisoned {
			steer = `{"bad_data":true}`
		}
		ids[i] = h.Send(q, recorder.TaskRequest(fmt.Sprintf("m%d", i), steer))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var replies []<-chan commands.Reply[commands.MessageOutcome]
	for _, id := range ids {
		r, reply := commands.NewResponder[commands.MessageOutcome](ctx)
		replies = append(replies, reply)
		if err := h.cmds.Send(ctx, commands.ProcessMessage{Kind: commands.KindTaskRequest, Queue: q, MsgID: id, ReceivedAt: time.Now(), Reply: r}); err != nil {
			t.Fatal(err)
		}
	}
	for h.cmds.Len() > 0 {
		runtime.Gosched() // until the actor has taken every event off the channel
	}
	callsBefore := rec.Calls.Load()
	close(rec.Gate)
	got := map[int64]commands.MessageOutcome{}
	for _, reply := range replies {
		select {
		case r := <-reply:
			got[r.Value.Ref.MsgID] = r.Value
		case <-ctx.Done():
			t.Fatal("no reply")
		}
	}
	for i, id := range ids {
		want := commands.OutcomeProcessed
		if i == poisoned {
			want = commands.OutcomeDeadLettered
		}
		if got[id].Outcome != want {
			t.Fatalf("message %d: outcome %v (%v), want %v", i, got[id].Outcome, got[id].Err, want)
		}
		effects := 1
		if i == poisoned {
			effects = 0
		}
		if e := rec.Effects(t, "task", fmt.Sprintf("m%d", i)); e != effects {
			t.Fatalf("message %d: %d effects, want %d", i, e, effects)
		}
	}
	// One call for the batch, then two per level of bisection: 1 + 2·log2(8).
	if calls := rec.Calls.Load() - callsBefore; calls > 7 {
		t.Fatalf("%d handler calls for a batch of %d with one poisoned message, want at most 7", calls, n)
	}
	if n := h.QueueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}

// A body over MaxMessageBytes is dead-lettered by the claim, in the database, with its original
// body, and its batch's other messages are processed as usual.
func TestOversizedMessagesAreDeadLetteredWithoutBeingRead(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.MaxMessageBytes = 64 << 10 })
	q := messages.QueueTaskRequests
	big := h.Send(q, recorder.TaskRequest("big", `{"pad":"`+strings.Repeat("x", 100<<10)+`"}`))
	small := h.Send(q, recorder.TaskRequest("small", `{}`))
	got := h.processAll(q, big, small)
	if o := got[big]; o.Outcome != commands.OutcomeDeadLettered || o.Detail != messages.ReasonMessageTooLarge {
		t.Fatalf("big: %v %q (%v), want dead_lettered %s", o.Outcome, o.Detail, o.Err, messages.ReasonMessageTooLarge)
	}
	if o := got[small]; o.Outcome != commands.OutcomeProcessed {
		t.Fatalf("small: %v (%v), want processed", o.Outcome, o.Err)
	}
	if h.Rec.Effects(t, "task", "big") != 0 || h.Rec.Effects(t, "task", "small") != 1 || h.QueueLen(q) != 0 {
		t.Fatal("the oversized message must have no effect and leave the queue with the small one")
	}
	dl := h.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != messages.ReasonMessageTooLarge || dl[0].SourceMsgID != big ||
		!strings.Contains(dl[0].Error, "CONSUMER_MAX_MESSAGE_BYTES") || len(dl[0].Message) < 100<<10 {
		t.Fatalf("dead letters = %d, want one message_too_large carrying the original body", len(dl))
	}
}

// A batch whose claim fails (here: the claim function is missing) fails its messages; they are
// not "not found", which would hide a broken database behind a normal race outcome.
func TestAFailedClaimIsAFailureNotANotFound(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	q := messages.QueueTaskRequests
	id := h.Send(q, recorder.TaskRequest("claimless", `{}`))
	rename := func(from, to string) {
		t.Helper()
		sql := fmt.Sprintf("ALTER FUNCTION tasker.%s(text, bigint[], integer, bigint) RENAME TO %s", from, to)
		if _, err := h.DB.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rename("pgmq_read_specific_messages", "pgmq_read_specific_messages_away")
	if out := h.process(q, id); out.Outcome != commands.OutcomeFailed || out.Err == nil {
		t.Fatalf("outcome with a failing claim = %v (%v), want failed", out.Outcome, out.Err)
	}
	rename("pgmq_read_specific_messages_away", "pgmq_read_specific_messages")
	if out := h.process(q, id); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("outcome once the claim works = %v (%v), want processed", out.Outcome, out.Err)
	}
}
