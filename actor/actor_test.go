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
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

type harness struct {
	t    *testing.T
	db   *testdb.DB
	rec  *recorder.Recorder
	cmds *commands.CommandChannel
	act  *actor.Actor
	logs *observer.ObservedLogs
	stop context.CancelFunc
	done chan error
}

type option func(*actor.Config)

func start(t *testing.T, opts ...option) *harness {
	t.Helper()
	db := testdb.New(t, 8)
	return startOn(t, db, recorder.New(t, db.Pool), opts...)
}

func startOn(t *testing.T, db *testdb.DB, rec *recorder.Recorder, opts ...option) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cmds := commands.NewCommandChannel(100)
	cfg := actor.Config{
		Pool: db.Pool, Commands: cmds, Handlers: rec.Handlers(),
		VisibilityTimeout: time.Second, MaxReadCount: 3, Concurrency: 4, BatchSize: 16,
		ShutdownTimeout: 10 * time.Second, Logger: zap.New(core),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := actor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, db: db, rec: rec, cmds: cmds, act: a, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			t.Error("actor did not stop")
		}
	})
	return h
}

func (h *harness) send(queue string, body json.RawMessage) int64 {
	h.t.Helper()
	id, err := pgmq.Send(context.Background(), h.db.Pool, queue, body, pgmq.SendOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// event sends a message event and waits for its outcome.
func (h *harness) event(queue string, id int64) commands.MessageOutcome {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := commands.Request(ctx, h.cmds, func(r commands.Responder[commands.MessageOutcome]) commands.Command {
		return commands.ProcessMessageEvent{Kind: commands.KindForQueue(queue), Queue: queue, MsgID: id, ReceivedAt: time.Now(), Reply: r}
	})
	if err != nil {
		h.t.Fatalf("event %s/%d: %v", queue, id, err)
	}
	return out
}

func (h *harness) queueLen(queue string) int {
	h.t.Helper()
	var n int
	if err := h.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgmq.q_"+queue).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) deadLetters() []messages.DeadLetter {
	h.t.Helper()
	rows, err := h.db.Pool.Query(context.Background(), "SELECT message FROM pgmq.q_orchestration_dlq ORDER BY msg_id")
	if err != nil {
		h.t.Fatal(err)
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		h.t.Fatal(err)
	}
	var out []messages.DeadLetter
	for _, b := range bodies {
		var d messages.DeadLetter
		if err := json.Unmarshal(b, &d); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// waitVisible waits until the message's visibility timeout has passed.
func (h *harness) waitVisible(queue string, id int64) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var visible bool
		err := h.db.Pool.QueryRow(context.Background(), "SELECT vt <= clock_timestamp() FROM pgmq.q_"+queue+" WHERE msg_id = $1", id).Scan(&visible)
		if err != nil {
			h.t.Fatalf("message %s/%d: %v", queue, id, err)
		}
		if visible {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("message %s/%d did not become visible", queue, id)
}

func TestEventIsClaimedHandledAndAckedTogether(t *testing.T) {
	h := start(t)
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("r1", `{"n":1}`))
	out := h.event(messages.QueueTaskRequests, id)
	if out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("outcome = %v (%s, %v), want processed", out.Outcome, out.Detail, out.Err)
	}
	if n := h.rec.Effects(t, "task", "r1"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	if n := h.queueLen(messages.QueueTaskRequests); n != 0 {
		t.Fatalf("queue length after ack = %d, want 0", n)
	}
	// Announced again after the ack: nothing to claim, a normal outcome, not an error.
	again := h.event(messages.QueueTaskRequests, id)
	if again.Outcome != commands.OutcomeNotFound {
		t.Fatalf("second outcome = %v, want not_found", again.Outcome)
	}
	if n := h.rec.Effects(t, "task", "r1"); n != 1 {
		t.Fatalf("effects after duplicate = %d, want 1", n)
	}
	if errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).Len(); errs != 0 {
		t.Fatalf("error logs = %d, want 0: %v", errs, h.logs.All())
	}
	snap := h.act.Stats().Snapshot().ByKind["task_request"]
	if snap.Processed != 1 || snap.NotFound != 1 || snap.Failed != 0 {
		t.Fatalf("stats = %+v, want processed 1, not_found 1", snap)
	}
}

func TestEachKindRoutesToItsHandler(t *testing.T) {
	h := start(t)
	task, step := uuid.New(), uuid.New()
	res := h.send(messages.QueueStepResults, json.RawMessage(fmt.Sprintf(
		`{"task_uuid":%q,"step_uuid":%q,"attempt":1,"result":{"success":true,"result":{"v":1}}}`, task, step)))
	fin := h.send(messages.QueueTaskFinalizations, json.RawMessage(fmt.Sprintf(`{"task_uuid":%q}`, task)))
	if out := h.event(messages.QueueStepResults, res); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("step result outcome = %v (%v)", out.Outcome, out.Err)
	}
	if out := h.event(messages.QueueTaskFinalizations, fin); out.Outcome != commands.OutcomeProcessed {
		t.Fatalf("finalization outcome = %v (%v)", out.Outcome, out.Err)
	}
	if h.rec.Effects(t, "step", step.String()) != 1 || h.rec.Effects(t, "final", task.String()) != 1 {
		t.Fatal("step or finalization handler did not run exactly once")
	}
}

func TestHandlerFailureRollsBackAndRedelivers(t *testing.T) {
	h := start(t)
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("flaky", `{"fail_until":2}`))
	first := h.event(messages.QueueTaskRequests, id)
	if first.Outcome != commands.OutcomeFailed {
		t.Fatalf("first outcome = %v, want failed", first.Outcome)
	}
	if n := h.rec.Effects(t, "task", "flaky"); n != 0 {
		t.Fatalf("effects of a failed handler = %d, want 0 (rolled back)", n)
	}
	var readCt int
	if err := h.db.Pool.QueryRow(context.Background(), "SELECT read_ct FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1", id).Scan(&readCt); err != nil {
		t.Fatal(err)
	}
	if readCt != 1 {
		t.Fatalf("read_ct after a failed delivery = %d, want 1 (the claim must stand)", readCt)
	}
	// Invisible until the visibility timeout passes.
	if early := h.event(messages.QueueTaskRequests, id); early.Outcome != commands.OutcomeNotFound {
		t.Fatalf("outcome before vt = %v, want not_found", early.Outcome)
	}
	h.waitVisible(messages.QueueTaskRequests, id)
	second := h.event(messages.QueueTaskRequests, id)
	if second.Outcome != commands.OutcomeProcessed {
		t.Fatalf("redelivery outcome = %v (%v), want processed", second.Outcome, second.Err)
	}
	if n := h.rec.Effects(t, "task", "flaky"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	failures := h.logs.FilterMessage("message failed; it will be redelivered").All()
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
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("doomed", `{"fail":true}`))
	var outcomes []commands.Outcome
	for range 3 {
		h.waitVisible(messages.QueueTaskRequests, id)
		outcomes = append(outcomes, h.event(messages.QueueTaskRequests, id).Outcome)
	}
	want := []commands.Outcome{commands.OutcomeFailed, commands.OutcomeFailed, commands.OutcomeDeadLettered}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Fatalf("outcomes = %v, want %v", outcomes, want)
	}
	if n := h.queueLen(messages.QueueTaskRequests); n != 0 {
		t.Fatalf("source queue length = %d, want 0", n)
	}
	dl := h.deadLetters()
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	d := dl[0]
	if d.SourceQueue != messages.QueueTaskRequests || d.SourceMsgID != id || d.ReadCount != 3 ||
		d.Reason != messages.ReasonRetriesExceeded || !strings.Contains(d.Error, "injected failure") ||
		!strings.Contains(string(d.Message), `"doomed"`) {
		t.Fatalf("dead letter = %+v", d)
	}
	if n := h.rec.Attempts.Load(); n != 3 {
		t.Fatalf("handler attempts = %d, want 3", n)
	}
}

func TestReadCountAboveMaxIsDeadLetteredWithoutRunningTheHandler(t *testing.T) {
	h := start(t)
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("crashy", `{}`))
	// Deliveries that never finished (a consumer crashing mid-handler) still count.
	if _, err := h.db.Pool.Exec(context.Background(), "UPDATE pgmq.q_orchestration_task_requests SET read_ct = 3 WHERE msg_id = $1", id); err != nil {
		t.Fatal(err)
	}
	out := h.event(messages.QueueTaskRequests, id)
	if out.Outcome != commands.OutcomeDeadLettered || out.Detail != messages.ReasonMaxReadCount {
		t.Fatalf("outcome = %v %q, want dead_lettered %s", out.Outcome, out.Detail, messages.ReasonMaxReadCount)
	}
	if h.rec.Attempts.Load() != 0 {
		t.Fatal("handler ran for a message above the read count")
	}
}

func TestMalformedMessagesAreDeadLetteredAtOnceWhileOthersFlow(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	ctx := context.Background()
	// Not JSON at all can't go through pgmq.send's jsonb; a JSON string is the closest a
	// producer can get. Also a wrong shape and a missing field.
	badJSON := h.send(q, json.RawMessage(`"just a string"`))
	wrongType := h.send(q, json.RawMessage(`{"task_request":{"namespace":"demo","name":"linear","version":"1.0.0","context":[1,2]}}`))
	missing := h.send(q, json.RawMessage(`{"task_request":{"name":"linear","version":"1.0.0","context":{}}}`))
	good := h.send(q, recorder.TaskRequest("good", `{}`))

	// All four in one batch.
	replies := make(chan commands.MessageOutcome, 4)
	for _, id := range []int64{badJSON, wrongType, missing, good} {
		go func() { replies <- h.event(q, id) }()
	}
	got := map[int64]commands.MessageOutcome{}
	for range 4 {
		o := <-replies
		got[o.Ref.MsgID] = o
	}
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
	if n := h.queueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
	if dl := h.deadLetters(); len(dl) != 3 {
		t.Fatalf("dead letters = %d, want 3", len(dl))
	}
	var reasons []string
	rows, _ := h.db.Pool.Query(ctx, "SELECT message->>'reason' FROM pgmq.q_orchestration_dlq ORDER BY (message->>'source_msg_id')::bigint")
	reasons, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if reasons[0] != messages.ReasonValidation || reasons[1] != messages.ReasonValidation {
		t.Fatalf("reasons = %v", reasons)
	}
	if n := len(h.logs.FilterMessage("message dead-lettered").All()); n != 3 {
		t.Fatalf("dead-letter log lines = %d, want exactly one per message (3)", n)
	}
}

func TestOneFailureInABatchDoesNotUndoTheOthers(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	ids := []int64{
		h.send(q, recorder.TaskRequest("a", `{}`)),
		h.send(q, recorder.TaskRequest("b", `{"fail":true}`)),
		h.send(q, recorder.TaskRequest("c", `{"panic":true}`)),
		h.send(q, recorder.TaskRequest("d", `{"permanent":true}`)),
		h.send(q, recorder.TaskRequest("e", `{}`)),
	}
	replies := make(chan commands.MessageOutcome, len(ids))
	for _, id := range ids {
		go func() { replies <- h.event(q, id) }()
	}
	got := map[int64]commands.Outcome{}
	for range ids {
		o := <-replies
		got[o.Ref.MsgID] = o.Outcome
	}
	want := []commands.Outcome{commands.OutcomeProcessed, commands.OutcomeFailed, commands.OutcomeFailed, commands.OutcomeDeadLettered, commands.OutcomeProcessed}
	for i, id := range ids {
		if got[id] != want[i] {
			t.Fatalf("message %d outcome = %v, want %v (all: %v)", i, got[id], want[i], got)
		}
	}
	for key, n := range map[string]int{"a": 1, "b": 0, "c": 0, "d": 0, "e": 1} {
		if got := h.rec.Effects(t, "task", key); got != n {
			t.Fatalf("effects of %s = %d, want %d", key, got, n)
		}
	}
	if n := h.queueLen(q); n != 2 {
		t.Fatalf("queue length = %d, want 2 (the two failures wait for redelivery)", n)
	}
}

func TestClaimUsesTheConfiguredVisibilityTimeout(t *testing.T) {
	h := start(t, func(c *actor.Config) { c.VisibilityTimeout = 42 * time.Second })
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("vt", `{"fail":true}`))
	if out := h.event(messages.QueueTaskRequests, id); out.Outcome != commands.OutcomeFailed {
		t.Fatalf("outcome = %v", out.Outcome)
	}
	var secs float64
	if err := h.db.Pool.QueryRow(context.Background(),
		"SELECT extract(epoch FROM vt - clock_timestamp()) FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1", id).Scan(&secs); err != nil {
		t.Fatal(err)
	}
	if secs < 40 || secs > 42.5 {
		t.Fatalf("vt is %.1fs ahead, want about 42s", secs)
	}
}

func TestDroppedReplyReceiverIsLoggedAtError(t *testing.T) {
	h := start(t)
	id := h.send(messages.QueueTaskRequests, recorder.TaskRequest("orphan", `{}`))
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	resp, _ := commands.NewResponder[commands.MessageOutcome](gone)
	if err := h.cmds.Send(context.Background(), commands.ProcessMessageEvent{
		Kind: commands.KindTaskRequest, Queue: messages.QueueTaskRequests, MsgID: id, ReceivedAt: time.Now(), Reply: resp,
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.logs.FilterMessage("reply dropped: the requester stopped waiting before the reply was sent").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no ERROR log for the dropped reply")
		}
		time.Sleep(10 * time.Millisecond)
	}
	entry := h.logs.FilterMessage("reply dropped: the requester stopped waiting before the reply was sent").All()[0]
	if entry.Level != zapcore.ErrorLevel {
		t.Fatalf("level = %v, want error", entry.Level)
	}
	// The work itself was done and acknowledged.
	if h.rec.Effects(t, "task", "orphan") != 1 || h.queueLen(messages.QueueTaskRequests) != 0 {
		t.Fatal("the message was not processed")
	}
}

func TestStatsAndHealthCommands(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	h.event(q, h.send(q, recorder.TaskRequest("s1", `{}`)))
	h.event(q, h.send(q, recorder.TaskRequest("s2", `{"permanent":true}`)))
	h.event(q, 999999)
	h.send(q, recorder.TaskRequest("waiting", `{}`)) // left in the queue: depth 1

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
	db := testdb.New(t, 8)
	rec := recorder.New(t, db.Pool)
	h := startOn(t, db, rec, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 1 })
	q := messages.QueueTaskRequests
	blocked := h.send(q, recorder.TaskRequest("inflight", `{"block":true}`))
	var rest []int64
	for i := range 5 {
		rest = append(rest, h.send(q, recorder.TaskRequest(fmt.Sprintf("later-%d", i), `{}`)))
	}
	for _, id := range append([]int64{blocked}, rest...) {
		if err := h.cmds.Send(context.Background(), commands.ProcessMessageEvent{Kind: commands.KindTaskRequest, Queue: q, MsgID: id, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	<-rec.Entered // the first handler is running
	h.stop()      // SIGTERM: stop intake
	select {
	case <-h.done:
		t.Fatal("actor returned while a handler was still in flight")
	default:
	}
	close(rec.Gate) // let the in-flight handler finish
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("actor did not return after the in-flight handler finished")
	}
	h.done <- nil // for the cleanup
	if rec.Effects(t, "task", "inflight") != 1 {
		t.Fatal("in-flight handler's work was not committed")
	}
	if n := h.queueLen(q); n != 5 {
		t.Fatalf("queue length after shutdown = %d, want the 5 unstarted messages", n)
	}
	// The next start processes the rest.
	h2 := startOn(t, db, rec)
	for _, id := range rest {
		if out := h2.event(q, id); out.Outcome != commands.OutcomeProcessed {
			t.Fatalf("after restart: msg %d outcome = %v", id, out.Outcome)
		}
	}
	if n := h2.queueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}

func TestShutdownTimeoutCancelsStuckHandlers(t *testing.T) {
	db := testdb.New(t, 8)
	rec := recorder.New(t, db.Pool)
	h := startOn(t, db, rec, func(c *actor.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	q := messages.QueueTaskRequests
	id := h.send(q, recorder.TaskRequest("stuck", `{"block":true}`))
	if err := h.cmds.Send(context.Background(), commands.ProcessMessageEvent{Kind: commands.KindTaskRequest, Queue: q, MsgID: id, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	<-rec.Entered
	began := time.Now()
	h.stop()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("actor did not return after its shutdown timeout")
	}
	h.done <- nil
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("shutdown took %s with a 200ms timeout", took)
	}
	if rec.Effects(t, "task", "stuck") != 0 || h.queueLen(q) != 1 {
		t.Fatal("a cancelled handler's work must roll back and its message stay queued")
	}
}

// claimedMessage sends a ProcessMessage for a message the caller claimed and waits for it.
func (h *harness) claimedMessage(queue string, m pgmq.Message) commands.MessageOutcome {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := commands.Request(ctx, h.cmds, func(r commands.Responder[commands.MessageOutcome]) commands.Command {
		return commands.ProcessMessage{Kind: commands.KindForQueue(queue), Queue: queue, Message: m, ReceivedAt: time.Now(), Reply: r}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// A poller claim whose visibility timeout ran out and that was claimed again belongs to the new
// claimant: the stale copy must not run (regression: the chaos suite's stall scenario ran both
// copies, inflated read_ct and dead-lettered valid messages).
func TestStaleClaimIsNotProcessed(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	q := messages.QueueTaskRequests
	h.send(q, recorder.TaskRequest("stale", `{}`))
	first, err := pgmq.Read(ctx, h.db.Pool, q, time.Second, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("first claim: %v %v", first, err)
	}
	h.waitVisible(q, first[0].ID)
	second, err := pgmq.Read(ctx, h.db.Pool, q, 30*time.Second, 1)
	if err != nil || len(second) != 1 || second[0].ReadCount != 2 {
		t.Fatalf("second claim: %v %v", second, err)
	}
	if out := h.claimedMessage(q, first[0]); out.Outcome != commands.OutcomeNotFound {
		t.Fatalf("stale claim outcome = %v, want not_found", out.Outcome)
	}
	if h.rec.Effects(t, "task", "stale") != 0 {
		t.Fatal("the stale claim ran its handler")
	}
	// Both copies in one batch: only the newest claim runs.
	replies := make(chan commands.MessageOutcome, 2)
	for _, m := range []pgmq.Message{first[0], second[0]} {
		go func() { replies <- h.claimedMessage(q, m) }()
	}
	outcomes := map[commands.Outcome]int{}
	for range 2 {
		outcomes[(<-replies).Outcome]++
	}
	if outcomes[commands.OutcomeProcessed] != 1 || outcomes[commands.OutcomeNotFound] != 1 {
		t.Fatalf("outcomes = %v, want one processed and one not_found", outcomes)
	}
	if n := h.rec.Effects(t, "task", "stale"); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
	if n := h.queueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}

// A busy actor still answers health checks at once on its control channel (regression: the
// health command queued behind the work and /readyz failed while the consumer was healthy).
func TestHealthAnswersWhileBusy(t *testing.T) {
	db := testdb.New(t, 8)
	rec := recorder.New(t, db.Pool)
	h := startOn(t, db, rec, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 1 })
	q := messages.QueueTaskRequests
	blocked := h.send(q, recorder.TaskRequest("busy", `{"block":true}`))
	ids := []int64{blocked}
	for i := range 60 {
		ids = append(ids, h.send(q, recorder.TaskRequest(fmt.Sprintf("queued-%d", i), `{}`)))
	}
	for _, id := range ids {
		if err := h.cmds.Send(context.Background(), commands.ProcessMessageEvent{Kind: commands.KindTaskRequest, Queue: q, MsgID: id, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	<-rec.Entered // the only slot is busy; the rest is queued
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
	close(rec.Gate)
}

// A value the database refuses fails the same way on every delivery: dead-lettered at once
// (regression: an over-long request_id was retried until MaxReadCount).
func TestDataTheDatabaseRefusesIsDeadLetteredAtOnce(t *testing.T) {
	h := start(t)
	q := messages.QueueTaskRequests
	id := h.send(q, recorder.TaskRequest("bad-data", `{"bad_data":true}`))
	out := h.event(q, id)
	if out.Outcome != commands.OutcomeDeadLettered || out.Detail != messages.ReasonPermanentError {
		t.Fatalf("outcome = %v %q (%v), want dead_lettered %s", out.Outcome, out.Detail, out.Err, messages.ReasonPermanentError)
	}
	if dl := h.deadLetters(); len(dl) != 1 || dl[0].ReadCount != 1 || !strings.Contains(dl[0].Error, "22P02") {
		t.Fatalf("dead letters = %+v", dl)
	}
}

// A message that fails the handler's call as a whole (here: data the database refuses) is
// isolated by bisecting the batch: every other message of the batch gets its outcome, with a
// few calls of the handler, not one per message.
func TestPoisonedMessageIsIsolatedByBisection(t *testing.T) {
	db := testdb.New(t, 8)
	rec := recorder.New(t, db.Pool)
	h := startOn(t, db, rec, func(c *actor.Config) { c.Concurrency = 1; c.BatchSize = 16 })
	q := messages.QueueTaskRequests
	blocker := h.send(q, recorder.TaskRequest("blocker", `{"block":true}`))
	if err := h.cmds.Send(context.Background(), commands.ProcessMessageEvent{Kind: commands.KindTaskRequest, Queue: q, MsgID: blocker, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	<-rec.Entered // the only slot is taken: the next messages queue up into one batch
	const n, poisoned = 8, 5
	ids := make([]int64, n)
	for i := range ids {
		steer := `{}`
		if i == poisoned {
			steer = `{"bad_data":true}`
		}
		ids[i] = h.send(q, recorder.TaskRequest(fmt.Sprintf("m%d", i), steer))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var replies []<-chan commands.Reply[commands.MessageOutcome]
	for _, id := range ids {
		r, reply := commands.NewResponder[commands.MessageOutcome](ctx)
		replies = append(replies, reply)
		if err := h.cmds.Send(ctx, commands.ProcessMessageEvent{Kind: commands.KindTaskRequest, Queue: q, MsgID: id, ReceivedAt: time.Now(), Reply: r}); err != nil {
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
	if n := h.queueLen(q); n != 0 {
		t.Fatalf("queue length = %d, want 0", n)
	}
}
