// Package pipelinetest is the harness the actor and service tests share: a fresh migrated
// database, the recorder's handlers, an observed logger, helpers to send and inspect queue
// messages, and a runner for a component's Run in the background.
package pipelinetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// Harness is one test's database, handlers and logs.
type Harness struct {
	T      testing.TB
	DB     *testdb.DB
	Rec    *recorder.Recorder
	Logger *zap.Logger            // logs at debug into Logs
	Logs   *observer.ObservedLogs // everything Logger wrote
}

// New returns a harness on a fresh database whose pool has at most maxConns connections.
func New(t testing.TB, maxConns int32) *Harness {
	t.Helper()
	db := testdb.New(t, maxConns)
	core, logs := observer.New(zapcore.DebugLevel)
	return &Harness{T: t, DB: db, Rec: recorder.New(t, db.Pool), Logger: zap.New(core), Logs: logs}
}

// Send enqueues body on queue and returns its msg_id.
func (h *Harness) Send(queue string, body json.RawMessage) int64 {
	h.T.Helper()
	id, err := pgmq.Send(context.Background(), h.DB.Pool, queue, body, pgmq.SendOptions{})
	if err != nil {
		h.T.Fatal(err)
	}
	return id
}

// QueueLen counts the messages in queue, visible or not.
func (h *Harness) QueueLen(queue string) int {
	h.T.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table(queue)).Scan(&n); err != nil {
		h.T.Fatal(err)
	}
	return n
}

// ReadCount returns a message's read_ct.
func (h *Harness) ReadCount(queue string, id int64) int {
	h.T.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(context.Background(), "SELECT read_ct FROM "+table(queue)+" WHERE msg_id = $1", id).Scan(&n); err != nil {
		h.T.Fatalf("message %s/%d: %v", queue, id, err)
	}
	return n
}

// ExpireVT ends a message's visibility timeout now, as if it had run out: the test does not
// wait for the clock. It blocks while a transaction holds the message.
func (h *Harness) ExpireVT(queue string, id int64) {
	h.T.Helper()
	tag, err := h.DB.Pool.Exec(context.Background(), "UPDATE "+table(queue)+" SET vt = clock_timestamp() WHERE msg_id = $1", id)
	if err != nil || tag.RowsAffected() != 1 {
		h.T.Fatalf("expire the visibility timeout of %s/%d: %v (%d rows)", queue, id, err, tag.RowsAffected())
	}
}

// DeadLetters decodes every message in orchestration_dlq, oldest first.
func (h *Harness) DeadLetters() []messages.DeadLetter {
	h.T.Helper()
	rows, err := h.DB.Pool.Query(context.Background(), "SELECT message FROM "+table(messages.QueueDLQ)+" ORDER BY msg_id")
	if err != nil {
		h.T.Fatal(err)
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		h.T.Fatal(err)
	}
	var out []messages.DeadLetter
	for _, b := range bodies {
		var d messages.DeadLetter
		if err := json.Unmarshal(b, &d); err != nil {
			h.T.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// ErrorLogs returns the lines logged at error level.
func (h *Harness) ErrorLogs() []observer.LoggedEntry {
	return h.Logs.FilterLevelExact(zapcore.ErrorLevel).All()
}

func table(queue string) string { return pgx.Identifier{"pgmq", "q_" + queue}.Sanitize() }

// Running is a component's Run in the background.
type Running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start calls run in the background with a context that Stop (or the end of the test) cancels.
// When the test ends, Run must return nil within testsignal.Timeout.
func Start(t testing.TB, run func(context.Context) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx)
	}()
	t.Cleanup(func() {
		r.Stop()
		if err := r.Wait(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// Stop cancels Run's context, as SIGTERM does for the consumer.
func (r *Running) Stop() { r.cancel() }

// Done is closed when Run has returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait waits for Run to return and returns its error, failing the test after
// testsignal.Timeout.
func (r *Running) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testsignal.Timeout):
		t.Fatalf("Run did not return within %v", testsignal.Timeout)
		return nil
	}
}
