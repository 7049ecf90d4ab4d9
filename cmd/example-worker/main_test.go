package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(map[string]string{
		"DATABASE_URL": "postgres://u@localhost:5432/db",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenDatabaseURL != c.DatabaseURL || c.Namespace != "demo" || c.Concurrency != 8 ||
		c.VisibilityTimeout != 30*time.Second || c.HeartbeatInterval != 0 || c.StepDelay != 0 ||
		c.PollInterval != time.Second || c.ShutdownTimeout != 30*time.Second || c.LogFormat != "json" {
		t.Errorf("defaults %+v", c)
	}
	if app := c.pool.ConnConfig.RuntimeParams["application_name"]; app != "example-worker" {
		t.Errorf("application_name %q", app)
	}
	if c.pool.MaxConns != 10 {
		t.Errorf("MaxConns %d, want concurrency + 2", c.pool.MaxConns)
	}

	c, err = loadConfig(context.Background(), envconfig.MapLookuper(map[string]string{
		"DATABASE_URL":              "postgres://u@localhost:5432/db?application_name=mine&pool_max_conns=3",
		"LISTEN_DATABASE_URL":       "postgres://u@direct:5432/db",
		"WORKER_HEARTBEAT_INTERVAL": "-1s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if app := c.pool.ConnConfig.RuntimeParams["application_name"]; app != "mine" || c.pool.MaxConns != 3 ||
		c.ListenDatabaseURL != "postgres://u@direct:5432/db" || c.HeartbeatInterval != -time.Second {
		t.Errorf("application_name %q, MaxConns %d, listen %q, heartbeat %v", app, c.pool.MaxConns, c.ListenDatabaseURL, c.HeartbeatInterval)
	}
}

func TestInvalidConfigExits2NamingTheVariable(t *testing.T) {
	t.Parallel()
	const db = "postgres://u@localhost:5432/db"
	cases := map[string]map[string]string{
		"DATABASE_URL":              {},
		"WORKER_VISIBILITY_TIMEOUT": {"DATABASE_URL": db, "WORKER_VISIBILITY_TIMEOUT": "soon"},
		"WORKER_CONCURRENCY":        {"DATABASE_URL": db, "WORKER_CONCURRENCY": "0"},
		"WORKER_NAMESPACE":          {"DATABASE_URL": db, "WORKER_NAMESPACE": "Bad-Name"},
		"WORKER_HEARTBEAT_INTERVAL": {"DATABASE_URL": db, "WORKER_HEARTBEAT_INTERVAL": "30s"},
		"WORKER_STEP_DELAY":         {"DATABASE_URL": db, "WORKER_STEP_DELAY": "-1s"},
		"LOG_LEVEL":                 {"DATABASE_URL": db, "LOG_LEVEL": "loud"},
		"LOG_FORMAT":                {"DATABASE_URL": db, "LOG_FORMAT": "xml"},
	}
	for variable, env := range cases {
		t.Run(variable, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), envconfig.MapLookuper(env), &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "example-worker: "+variable+": ") {
				t.Errorf("stderr %q, want one line naming %s", out, variable)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunProcessesAndShutsDown runs the program against a real database: a demo.square
// dispatch gets its result, the connections carry the program's name, and cancelling the
// context (what SIGTERM does) makes run return 0.
func TestRunProcessesAndShutsDown(t *testing.T) {
	t.Parallel()
	db := testdb.New(t, 4)
	ctx := context.Background()
	const queue = "worker_demo_queue"
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	// Results are announced on the orchestration channel: wait for one without sleeping.
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `LISTEN "`+tasker.OrchestrationChannel+`"`); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, envconfig.MapLookuper(map[string]string{
			"DATABASE_URL": db.URL, "WORKER_CONCURRENCY": "2", "LOG_LEVEL": "debug",
		}), &logs)
	}()

	d := messages.StepDispatch{
		TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New(), Namespace: "demo",
		TaskName: "diamond", TaskVersion: "1.0.0", StepName: "start",
		Handler: messages.HandlerSpec{Callable: "demo.square"}, Attempt: 1, MaxAttempts: 3,
		TaskContext: json.RawMessage(`{"n": 6}`),
	}
	body, _ := json.Marshal(d)
	if _, err := pgmq.Send(ctx, db.Pool, queue, body, pgmq.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 20*time.Second)
	defer waitCancel()
	if _, err := conn.WaitForNotification(waitCtx); err != nil {
		t.Fatalf("no step result announced: %v\nlogs:\n%s", err, logs.String())
	}
	msgs, err := pgmq.Read(ctx, db.Pool, messages.QueueStepResults, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d results, want 1", len(msgs))
	}
	r, err := messages.DecodeStepResult(msgs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if r.StepUUID != d.StepUUID || r.Result.Status != messages.StatusCompleted || string(r.Result.Result) != "36" {
		t.Errorf("result %+v %s, want completed 36", r, r.Result.Result)
	}

	// The LISTEN connection may still be connecting: wait for both names, with a deadline.
	var apps []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		rows, err := db.Pool.Query(ctx, "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = $1 ORDER BY 1", db.Name)
		if err != nil {
			t.Fatal(err)
		}
		if apps, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(apps, "example-worker") && slices.Contains(apps, "example-worker-listener") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections named %q, want example-worker and example-worker-listener", apps)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after shutdown, want 0\nlogs:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), `"msg":"worker: stopped"`) {
		t.Errorf("no shutdown log line in:\n%s", logs.String())
	}
}
