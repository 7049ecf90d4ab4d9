package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/recorder"
	"github.com/tasker-systems/consumer/internal/tcpproxy"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/ops"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/service"
)

// viaProxy returns the database URL rewritten to go through a proxy that the test can cut.
func viaProxy(t *testing.T, dbURL string) (string, *tcpproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tcpproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	u.Host = p.Addr()
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	return u.String(), p
}

type readiness struct {
	status int
	body   service.Readiness
}

func getReady(t *testing.T, base string) readiness {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	r.status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&r.body); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return r
}

func waitReady(t *testing.T, base string, want int, check string, checkOK bool) readiness {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := getReady(t, base)
		if r.status == want && (check == "" || r.body.Checks[check].OK == checkOK) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz = %d %+v, want %d with %s ok=%v", r.status, r.body, want, check, checkOK)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	db := testdb.New(t, 4)
	poolURL, dbProxy := viaProxy(t, db.URL)
	listenURL, listenProxy := viaProxy(t, db.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc, err := pgxpool.ParseConfig(poolURL)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	cfg := &config.Config{
		DatabaseURL: poolURL, ListenDatabaseURL: listenURL, Mode: config.ModeHybrid,
		VisibilityTimeout: 30 * time.Second, PollInterval: 200 * time.Millisecond, PollBatchSize: 100,
		Concurrency: 2, MaxReadCount: 5, CommandBuffer: 100, NotifyBuffer: 100, ShutdownTimeout: 5 * time.Second,
		BatchSize: 16, DBMaxConns: 4, ListenerPing: time.Second, ReconnectMax: 200 * time.Millisecond,
	}
	rec := recorder.New(t, db.Pool)
	reg := prometheus.NewRegistry()
	svc, err := service.New(cfg, pool, rec.Handlers(), zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service run: %v", err)
		}
	}()
	srv := httptest.NewServer(ops.Handler(svc, reg))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	r := waitReady(t, srv.URL, http.StatusOK, "listener", true)
	if r.body.Health == nil || r.body.Health.Status.String() != "healthy" {
		t.Fatalf("health in ready report = %+v", r.body.Health)
	}

	// Work, then metrics carry it.
	if _, err := pgmq.Send(ctx, db.Pool, messages.QueueTaskRequests, recorder.TaskRequest("m1", `{}`), pgmq.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rec.Effects(t, "task", "m1") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("message not processed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	metrics := scrape(t, srv.URL)
	for _, want := range []string{
		`consumer_messages_processed_total{outcome="processed",queue="orchestration_task_requests"} 1`,
		`consumer_notify_to_handler_seconds_count{queue="orchestration_task_requests"} 1`,
		`consumer_handler_duration_seconds_count{queue="orchestration_task_requests"} 1`,
		`consumer_channel_saturation{channel="orchestration_commands"}`,
		`consumer_queue_depth{queue="orchestration_dlq"} 0`,
		`consumer_dlq_depth 0`,
		`consumer_listener_reconnects_total`,
		`consumer_listener_connected 1`,
		`consumer_poller_cycles_total`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The listener's connection is cut: not ready, and the report says why.
	listenProxy.Cut()
	r = waitReady(t, srv.URL, http.StatusServiceUnavailable, "listener", false)
	if !r.body.Checks["database"].OK {
		t.Fatalf("database check failed while only the listener was cut: %+v", r.body)
	}
	if err := listenProxy.Restore(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, srv.URL, http.StatusOK, "listener", true)

	// The database is unreachable: not ready; back once it is.
	dbProxy.Cut()
	r = waitReady(t, srv.URL, http.StatusServiceUnavailable, "database", false)
	if r.body.Checks["database"].Error == "" {
		t.Fatalf("database check carries no error: %+v", r.body)
	}
	if err := dbProxy.Restore(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, srv.URL, http.StatusOK, "database", true)
	if !strings.Contains(scrape(t, srv.URL), "consumer_listener_reconnects_total 1") {
		t.Error("the listener reconnect was not counted")
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
