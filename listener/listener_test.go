package listener

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

// listenerFixture is a Listener on a fresh database with its signals enabled.
type listenerFixture struct {
	db         *testdb.DB
	l          *Listener
	out        *commands.NotificationChannel
	backlogs   atomic.Int64
	queueReady chan string
}

func newListenerFixture(t *testing.T, configure func(*Listener)) *listenerFixture {
	t.Helper()
	f := &listenerFixture{db: testdb.New(t, 4), out: commands.NewNotificationChannel(100), queueReady: make(chan string, 100)}
	f.l = &Listener{
		ConnString:   f.db.URL,
		Channel:      tasker.OrchestrationChannel,
		Queues:       orchestrationQueues,
		Out:          f.out,
		OnBacklog:    func(context.Context) { f.backlogs.Add(1) },
		OnQueueReady: func(q string) { f.queueReady <- q },
		PingInterval: -1,
	}
	if configure != nil {
		configure(f.l)
	}
	s := &f.l.testSignals
	s.connected.Init()
	s.disconnected.Init()
	s.handled.Init()
	s.ping.Init()
	s.pingFailed.Init()
	s.pingSkipped.Init()
	return f
}

// start runs the listener and waits until it listens.
func (f *listenerFixture) start(t *testing.T) {
	t.Helper()
	runInBackground(t, f.l.Run)
	if n := f.l.testSignals.connected.WaitOrTimeout(t); n != 1 {
		t.Fatalf("first connection numbered %d", n)
	}
	if !f.l.Connected() {
		t.Fatal("Connected() = false after connecting")
	}
}

func (f *listenerFixture) notify(t *testing.T, payload string) {
	t.Helper()
	if _, err := f.db.Pool.Exec(context.Background(), "SELECT pg_notify($1, $2)", tasker.OrchestrationChannel, payload); err != nil {
		t.Fatal(err)
	}
}

func (f *listenerFixture) send(t *testing.T, queue string) int64 {
	t.Helper()
	id, err := pgmq.Send(context.Background(), f.db.Pool, queue, json.RawMessage(`{}`), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// listenerPID finds the LISTEN connection's backend by application name.
func (f *listenerFixture) listenerPID(t *testing.T, appName string) int32 {
	t.Helper()
	var pid int32
	waitUntil(t, "the listener in pg_stat_activity", func() bool {
		pids, err := queryPIDs(f.db, appName)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 1 {
			t.Fatalf("%d connections named %q", len(pids), appName)
		}
		if len(pids) == 1 {
			pid = pids[0]
			return true
		}
		return false
	})
	return pid
}

func queryPIDs(db *testdb.DB, appName string) ([]int32, error) {
	rows, err := db.Pool.Query(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2", appName, db.Name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

func TestListenerDeliversEachQueue(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, nil)
	f.start(t)
	if got := f.backlogs.Load(); got != 1 {
		t.Errorf("OnBacklog called %d times after the first connect, want 1", got)
	}
	for _, q := range orchestrationQueues {
		id := f.send(t, q)
		n := receive(t, f.out)
		if n.Queue != q || !slices.Equal(n.MsgIDs, []int64{id}) {
			t.Fatalf("got %+v, want a notify notification for %s/%d", n, q, id)
		}
		if n.ReceivedAt.IsZero() {
			t.Error("ReceivedAt not set")
		}
	}
	if got := f.l.Received(); got != 3 {
		t.Errorf("Received() = %d, want 3", got)
	}
}

func TestListenerBatch(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, nil)
	f.start(t)
	bodies := []json.RawMessage{json.RawMessage(`{"a":1}`), json.RawMessage(`{"a":2}`), json.RawMessage(`{"a":3}`)}
	ids, err := pgmq.SendBatch(context.Background(), f.db.Pool, "orchestration_step_results", bodies, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := receive(t, f.out)
	if n.Queue != "orchestration_step_results" || !slices.Equal(n.MsgIDs, ids) {
		t.Fatalf("got %+v, want one notification with ids %v", n, ids)
	}
	if f.out.Len() != 0 {
		t.Errorf("%d more notifications, want exactly one for the batch", f.out.Len())
	}
}

func TestListenerQueueReady(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, nil)
	f.start(t)
	f.notify(t, `{"event_type":"queue_ready","queue_name":"orchestration_step_results"}`)
	if h := f.l.testSignals.handled.WaitOrTimeout(t); h.Outcome != outcomeQueueReady {
		t.Fatalf("handled as %v, want queue ready", h.Outcome)
	}
	if q := <-f.queueReady; q != "orchestration_step_results" {
		t.Fatalf("OnQueueReady(%q), want orchestration_step_results", q)
	}
	if f.out.Len() != 0 {
		t.Error("queue_ready produced a notification")
	}
}

func TestListenerMalformedPayload(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, func(l *Listener) {
		l.Queues = []string{"orchestration_task_requests"}
	})
	f.start(t)

	cases := []struct {
		payload   string
		pollQueue string // "" when OnQueueReady must not be called
	}{
		{`{"event_type":"message_ready","queue_name":"orchestration_task_requests","msg_id":"abc"}`, "orchestration_task_requests"},
		{`{not json`, ""},
		{`{"event_type":"message_ready","queue_name":"orchestration_step_results","msg_id":[]}`, ""}, // not served
		{`{"event_type":"bogus","queue_name":"orchestration_task_requests"}`, "orchestration_task_requests"},
	}
	for i, tc := range cases {
		f.notify(t, tc.payload)
		if h := f.l.testSignals.handled.WaitOrTimeout(t); h.Outcome != outcomeMalformed {
			t.Fatalf("%s: handled as %v, want malformed", tc.payload, h.Outcome)
		}
		if got := f.l.Malformed(); got != uint64(i+1) {
			t.Errorf("Malformed() = %d, want %d", got, i+1)
		}
		select {
		case q := <-f.queueReady:
			if q != tc.pollQueue {
				t.Errorf("%s: OnQueueReady(%q), want %q", tc.payload, q, tc.pollQueue)
			}
		default:
			if tc.pollQueue != "" {
				t.Errorf("%s: OnQueueReady not called", tc.payload)
			}
		}
	}
	if f.out.Len() != 0 || f.l.Ignored() != 0 {
		t.Errorf("out.Len() = %d, Ignored() = %d; want 0, 0", f.out.Len(), f.l.Ignored())
	}
}

func TestListenerIgnoresUnservedQueue(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, func(l *Listener) {
		l.Queues = []string{"orchestration_task_requests"}
	})
	f.start(t)
	f.send(t, "orchestration_step_results")
	if h := f.l.testSignals.handled.WaitOrTimeout(t); h.Outcome != outcomeIgnored || h.Queue != "orchestration_step_results" {
		t.Fatalf("handled %+v, want ignored orchestration_step_results", h)
	}
	f.notify(t, `{"event_type":"queue_ready","queue_name":"orchestration_task_finalizations"}`)
	if h := f.l.testSignals.handled.WaitOrTimeout(t); h.Outcome != outcomeIgnored {
		t.Fatalf("handled %+v, want ignored", h)
	}
	if got := f.l.Ignored(); got != 2 {
		t.Errorf("Ignored() = %d, want 2", got)
	}
	id := f.send(t, "orchestration_task_requests")
	if n := receive(t, f.out); n.Queue != "orchestration_task_requests" || !slices.Equal(n.MsgIDs, []int64{id}) {
		t.Fatalf("got %+v, want the served queue's message %d first", n, id)
	}
	if len(f.queueReady) != 0 {
		t.Error("OnQueueReady called for a queue not served")
	}
}

// TestListenerReconnect terminates the LISTEN backend: the listener notices, reconnects with a
// new backend, calls OnBacklog again, and what was announced while it was down is not delivered
// by notify, but is still in the queue for the backlog poll.
func TestListenerReconnect(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := newListenerFixture(t, func(l *Listener) {
		// Hold the first reconnect until the test has sent a message while disconnected.
		l.testHooks.beforeReconnect = func(ctx context.Context) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	})
	f.start(t)
	ctx := context.Background()

	pid := f.listenerPID(t, ApplicationNameDefault)
	if _, err := f.db.Pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	f.l.testSignals.disconnected.WaitOrTimeout(t)
	if f.l.Connected() {
		t.Fatal("Connected() = true after the backend was terminated")
	}
	lost := f.send(t, "orchestration_task_requests") // announced while nobody listens

	close(release)
	if n := f.l.testSignals.connected.WaitOrTimeout(t); n != 2 {
		t.Fatalf("connection numbered %d, want 2", n)
	}
	if !f.l.Connected() {
		t.Error("Connected() = false after reconnecting")
	}
	if got := f.l.Reconnects(); got != 1 {
		t.Errorf("Reconnects() = %d, want 1", got)
	}
	if got := f.backlogs.Load(); got < 2 {
		t.Errorf("OnBacklog called %d times, want at least 2 (after connect and reconnect)", got)
	}
	if newPID := f.listenerPID(t, ApplicationNameDefault); newPID == pid {
		t.Errorf("still backend %d after reconnecting", pid)
	}

	// Notifications arrive in order: if the lost one had been delivered it would come first.
	next := f.send(t, "orchestration_task_requests")
	if n := receive(t, f.out); !slices.Equal(n.MsgIDs, []int64{next}) {
		t.Fatalf("got ids %v, want [%d]; %d was sent while disconnected", n.MsgIDs, next, lost)
	}
	// It is still in the queue, for the backlog poll that OnBacklog asks for.
	var queued bool
	if err := f.db.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1)", lost).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if !queued {
		t.Fatalf("message %d is gone", lost)
	}
}

func TestListenerApplicationName(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		f := newListenerFixture(t, nil)
		f.start(t)
		f.listenerPID(t, "consumer-listener")
	})
	t.Run("set by the connection string", func(t *testing.T) {
		t.Parallel()
		f := newListenerFixture(t, nil)
		f.l.ConnString = withParam(f.db.URL, "application_name", "my-listener")
		f.start(t)
		f.listenerPID(t, "my-listener")
		if pids, err := queryPIDs(f.db, ApplicationNameDefault); err != nil || len(pids) != 0 {
			t.Errorf("connections named %s: %v (%v), want none", ApplicationNameDefault, pids, err)
		}
	})
}

func TestConnConfigApplicationName(t *testing.T) {
	t.Setenv("PGAPPNAME", "")
	cases := []struct{ conn, want string }{
		{"postgres://u@localhost/db", "consumer-listener"},
		{"postgres://u@localhost/db?application_name=mine", "mine"},
		{"host=localhost dbname=db application_name=mine", "mine"},
		{"host=localhost dbname=db", "consumer-listener"},
	}
	for _, tc := range cases {
		cfg, err := connConfig(tc.conn, ApplicationNameDefault)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.RuntimeParams["application_name"]; got != tc.want {
			t.Errorf("%s: application_name %q, want %q", tc.conn, got, tc.want)
		}
		if cfg.ConnectTimeout != ConnectTimeoutDefault {
			t.Errorf("%s: ConnectTimeout %v, want %v", tc.conn, cfg.ConnectTimeout, ConnectTimeoutDefault)
		}
	}
	t.Setenv("PGAPPNAME", "from-env")
	cfg, err := connConfig("postgres://u@localhost/db", ApplicationNameDefault)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.RuntimeParams["application_name"]; got != "from-env" {
		t.Errorf("with PGAPPNAME: application_name %q, want from-env", got)
	}
}

func TestListenerPing(t *testing.T) {
	t.Parallel()
	for _, viaPool := range []bool{false, true} {
		name := "short-lived connection"
		if viaPool {
			name = "PingDB"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newListenerFixture(t, func(l *Listener) { l.PingInterval = time.Millisecond })
			if viaPool {
				f.l.PingDB = f.db.Pool
			}
			f.start(t)
			if rtt := f.l.testSignals.ping.WaitOrTimeout(t); rtt <= 0 {
				t.Fatalf("ping round trip %v", rtt)
			}
			if f.l.LastPingRoundTrip() <= 0 {
				t.Errorf("LastPingRoundTrip() = %v, want > 0", f.l.LastPingRoundTrip())
			}
			if f.l.Reconnects() != 0 || !f.l.Connected() {
				t.Errorf("Reconnects() = %d, Connected() = %v after good pings", f.l.Reconnects(), f.l.Connected())
			}
		})
	}
}

// blackholeDB accepts the ping but never sends it: to the listener, its connection looks dead.
type blackholeDB struct{}

func (blackholeDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
func (blackholeDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("blackholeDB: Query")
}
func (blackholeDB) QueryRow(context.Context, string, ...any) pgx.Row { return nil }

func TestListenerPingTimeoutReconnects(t *testing.T) {
	t.Parallel()
	f := newListenerFixture(t, func(l *Listener) {
		l.PingInterval = time.Millisecond
		l.PingTimeout = 20 * time.Millisecond
		l.PingDB = blackholeDB{}
	})
	f.start(t)
	f.l.testSignals.pingFailed.WaitOrTimeout(t)
	f.l.testSignals.disconnected.WaitOrTimeout(t)
	if n := f.l.testSignals.connected.WaitOrTimeout(t); n != 2 {
		t.Fatalf("connection numbered %d, want 2", n)
	}
	if f.l.Reconnects() < 1 || f.backlogs.Load() < 2 {
		t.Errorf("Reconnects() = %d, OnBacklog calls = %d; want >= 1, >= 2", f.l.Reconnects(), f.backlogs.Load())
	}
}

// TestListenerBackpressure fills Out: the listener waits instead of dropping, does not mistake
// waiting for a dead connection, and delivers everything in order once Out drains.
func TestListenerBackpressure(t *testing.T) {
	t.Parallel()
	out := commands.NewNotificationChannel(1)
	f := newListenerFixture(t, func(l *Listener) {
		l.PingInterval = time.Millisecond
		l.PingTimeout = time.Second
	})
	f.l.Out = out
	f.l.PingDB = f.db.Pool
	f.start(t)
	var ids []int64
	for range 3 {
		ids = append(ids, f.send(t, "orchestration_task_requests"))
	}
	waitUntil(t, "a blocked send", func() bool { return out.Stats().BlockedSends > 0 })
	f.l.testSignals.pingSkipped.WaitOrTimeout(t) // the ping loop saw the listener busy
	for _, id := range ids {
		if n := receive(t, out); !slices.Equal(n.MsgIDs, []int64{id}) {
			t.Fatalf("got %v, want [%d]", n.MsgIDs, id)
		}
	}
	if f.l.Reconnects() != 0 {
		t.Errorf("Reconnects() = %d while blocked on Out, want 0", f.l.Reconnects())
	}
}

func TestListenerConfigErrors(t *testing.T) {
	t.Parallel()
	out := commands.NewNotificationChannel(1)
	cases := []struct {
		l    *Listener
		want string
	}{
		{&Listener{Channel: "c", Out: out}, "ConnString"},
		{&Listener{ConnString: "postgres://x@localhost/db", Out: out}, "Channel"},
		{&Listener{ConnString: "postgres://x@localhost/db", Channel: strings.Repeat("c", 64), Out: out}, "Channel"},
		{&Listener{ConnString: "postgres://x@localhost/db", Channel: "c"}, "Out"},
		{&Listener{ConnString: "postgres://x@localhost/db", Channel: "c", Out: out, Queues: []string{"Bad"}}, "invalid queue name"},
		{&Listener{ConnString: "::not a url", Channel: "c", Out: out}, "ConnString"},
	}
	for _, tc := range cases {
		err := tc.l.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run() = %v, want an error mentioning %s", err, tc.want)
		}
	}
}
