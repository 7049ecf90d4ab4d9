package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/workflow"
)

// Settings shared by every scenario; scenarios add or override environment variables.
const (
	consumerVT       = 2 * time.Second  // CONSUMER_VISIBILITY_TIMEOUT: redelivery within the scenario
	consumerShutdown = 10 * time.Second // CONSUMER_SHUTDOWN_TIMEOUT
	workerStepDelay  = 20 * time.Millisecond
	readyTimeout     = 45 * time.Second // a (re)started consumer must answer /readyz 200 within this
	recoveryTimeout  = 60 * time.Second // a fault must be recovered from within this
	suitePoolConns   = 6                // the suite's own connections per scenario
	workerQueue      = "worker_demo_queue"
)

// node is one process slot (consumer-1, worker-2): the slot keeps its log file and is
// restarted in place after a kill.
type node struct {
	role   string // "consumer" or "worker"
	slot   int
	env    []string // scenario-specific variables
	log    string
	p      *proc.Process
	addr   string // consumer HTTP address
	starts int
	// down is true between a deliberate stop (kill, SIGTERM) and the next start.
	down bool
}

func (n *node) name() string { return fmt.Sprintf("%s-%d", n.role, n.slot) }

// harness is one scenario's world: its database, processes, messages and findings.
type harness struct {
	s      *Suite
	sc     scenario
	size   sizing
	dir    string
	dbURL  string
	dbName string
	pool   *pgxpool.Pool

	rngMu sync.Mutex
	rng   *rand.Rand

	mu         sync.Mutex
	consumers  []*node
	workers    []*node
	faults     []string
	recoveries []time.Duration
	problems   []string
	notes      []string

	valid   map[string]*request // by request_id
	invalid []*badMsg
}

func newHarness(ctx context.Context, s *Suite, sc scenario) (*harness, error) {
	h := &harness{s: s, sc: sc, size: sc.size(s.opts), valid: map[string]*request{}}
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("%d/%s", s.opts.Seed, sc.name))
	h.rng = rand.New(rand.NewChaCha8(seed))
	h.dir = filepath.Join(s.opts.LogDir, sc.name)
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var err error
	h.dbURL, h.dbName, err = testdb.Create(cctx, s.admin, "chaos")
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(h.dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = suitePoolConns
	appname.Default(cfg.ConnConfig.RuntimeParams, "chaos-suite")
	if h.pool, err = pgxpool.NewWithConfig(cctx, cfg); err != nil {
		h.dropDB()
		return nil, err
	}
	if err := h.installRecorder(cctx); err != nil {
		h.pool.Close()
		h.dropDB()
		return nil, fmt.Errorf("install recorder: %w", err)
	}
	return h, nil
}

// recorderSQL records every message committed to the worker queue and the step results queue
// (in the sending transaction, so a rolled-back send leaves no row). The suite creates the
// worker queue before the consumer does (pgmq.create is idempotent) so the trigger sees the
// first dispatch.
const recorderSQL = `
	CREATE SCHEMA chaos;
	CREATE TABLE chaos.sent (
	  id        bigserial PRIMARY KEY,
	  queue     text NOT NULL,
	  msg_id    bigint NOT NULL,
	  step_uuid text,
	  attempt   text,
	  body      jsonb, -- step results only (dispatches can be large)
	  at        timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE FUNCTION chaos.record() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	  INSERT INTO chaos.sent (queue, msg_id, step_uuid, attempt, body)
	  SELECT TG_ARGV[0], r.msg_id,
	         CASE WHEN jsonb_typeof(r.message) = 'object' THEN r.message->>'step_uuid' END,
	         CASE WHEN jsonb_typeof(r.message) = 'object' THEN r.message->>'attempt' END,
	         CASE WHEN TG_ARGV[0] = 'orchestration_step_results' THEN r.message END
	  FROM new_rows r;
	  RETURN NULL;
	END $$;
	CREATE TRIGGER chaos_record AFTER INSERT ON pgmq.q_worker_demo_queue
	  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chaos.record('worker_demo_queue');
	CREATE TRIGGER chaos_record AFTER INSERT ON pgmq.q_orchestration_step_results
	  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chaos.record('orchestration_step_results');`

func (h *harness) installRecorder(ctx context.Context) error {
	if err := pgmq.Create(ctx, h.pool, workerQueue); err != nil {
		return err
	}
	_, err := h.pool.Exec(ctx, recorderSQL)
	return err
}

func (h *harness) dropDB() {
	if h.s.opts.Keep {
		h.notef("database kept: %s", h.dbName)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := testdb.Drop(ctx, h.s.admin, h.dbName); err != nil {
		h.s.progress("%s: %v", h.sc.name, err)
	}
}

func (h *harness) progress(format string, args ...any) {
	h.s.progress(h.sc.name+": "+format, args...)
}

func (h *harness) problemf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

func (h *harness) notef(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, fmt.Sprintf(format, args...))
}

// fault records an injected fault of a kind (what the table counts) with its details (for the
// progress lines).
func (h *harness) fault(kind, format string, args ...any) {
	h.mu.Lock()
	h.faults = append(h.faults, kind)
	h.mu.Unlock()
	h.progress("fault: %s: %s", kind, fmt.Sprintf(format, args...))
}

func (h *harness) recovered(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recoveries = append(h.recoveries, d)
}

// jitter returns a random duration in [lo, hi) from the scenario's seeded source.
func (h *harness) jitter(lo, hi time.Duration) time.Duration {
	return timeutil.Between(lo, hi, func() float64 {
		h.rngMu.Lock()
		defer h.rngMu.Unlock()
		return h.rng.Float64()
	})
}

// ---- processes ----

func (h *harness) baseEnv() []string {
	return []string{
		"DATABASE_URL=" + h.dbURL,
		"LISTEN_DATABASE_URL=" + h.dbURL,
		"PGAPPNAME=",
		"LOG_LEVEL=" + h.s.opts.LogLevel,
		"LOG_FORMAT=json",
	}
}

func (h *harness) consumerEnv(n *node) []string {
	env := append(h.baseEnv(),
		"CONSUMER_MODE=hybrid",
		"CONSUMER_TEMPLATE_PATH="+filepath.Join(h.s.root, "testdata", "templates"),
		"CONSUMER_HTTP_ADDR="+n.addr,
		"CONSUMER_VISIBILITY_TIMEOUT="+consumerVT.String(),
		"CONSUMER_SHUTDOWN_TIMEOUT="+consumerShutdown.String(),
	)
	return append(env, n.env...)
}

func (h *harness) workerEnv(n *node) []string {
	env := append(h.baseEnv(),
		"WORKER_NAMESPACE=demo",
		"WORKER_CONCURRENCY=8",
		"WORKER_VISIBILITY_TIMEOUT=5s",
		"WORKER_HEARTBEAT_INTERVAL=0",
		"WORKER_POLL_INTERVAL=250ms",
		"WORKER_STEP_DELAY="+workerStepDelay.String(),
		"WORKER_SHUTDOWN_TIMEOUT=10s",
		fmt.Sprintf("WORKER_ID=%s-%d", h.sc.name, n.slot),
	)
	return append(env, n.env...)
}

// addConsumer starts a new consumer slot and waits until it is ready.
func (h *harness) addConsumer(ctx context.Context, env ...string) (*node, error) {
	return h.addNode(ctx, "consumer", &h.consumers, env)
}

// addWorker starts a new worker slot.
func (h *harness) addWorker(ctx context.Context, env ...string) (*node, error) {
	return h.addNode(ctx, "worker", &h.workers, env)
}

// addNode appends a node of role to slots (under h.mu) and starts it.
func (h *harness) addNode(ctx context.Context, role string, slots *[]*node, env []string) (*node, error) {
	h.mu.Lock()
	n := &node{role: role, slot: len(*slots) + 1, env: env}
	*slots = append(*slots, n)
	h.mu.Unlock()
	n.log = filepath.Join(h.dir, n.name()+".log")
	return n, h.start(ctx, n)
}

// start (re)starts a node's process; a consumer must answer /readyz 200 within readyTimeout.
func (h *harness) start(ctx context.Context, n *node) error {
	n.starts++
	var env []string
	bin := h.s.bins.Worker
	args := []string(nil)
	if n.role == "consumer" {
		addr, err := proc.FreeAddr()
		if err != nil {
			return err
		}
		n.addr = addr
		env, bin, args = h.consumerEnv(n), h.s.bins.Consumer, []string{"run"}
	} else {
		env = h.workerEnv(n)
	}
	marker := fmt.Sprintf("=== chaos: start #%d of %s at %s\n", n.starts, n.name(), time.Now().Format(time.RFC3339Nano))
	if f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		_, _ = f.WriteString(marker)
		_ = f.Close()
	}
	p, err := proc.Start(n.name(), bin, args, env, n.log)
	if err != nil {
		return err
	}
	n.p, n.down = p, false
	if n.role != "consumer" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := proc.WaitReady(rctx, p, n.addr); err != nil {
		return fmt.Errorf("%s (start #%d, log %s): %s", n.name(), n.starts, n.log, textutil.FirstLine(err.Error()))
	}
	return nil
}

// kill sends SIGKILL and waits for the exit.
func (h *harness) kill(n *node) {
	n.down = true
	n.p.Kill()
}

// terminate sends SIGTERM and returns the exit code and how long the exit took.
func (h *harness) terminate(n *node, timeout time.Duration) (int, time.Duration, error) {
	n.down = true
	return n.p.Terminate(timeout)
}

// exitedByItself reports the nodes whose process ended without being told to.
func (h *harness) exitedByItself() []string {
	var out []string
	for _, n := range h.nodes() {
		if n.p == nil || n.down {
			continue
		}
		select {
		case <-n.p.Done():
			out = append(out, fmt.Sprintf("%s exited by itself with code %d (log %s)", n.name(), n.p.ExitCode(), n.log))
		default:
		}
	}
	return out
}

func (h *harness) nodes() []*node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append(append([]*node{}, h.consumers...), h.workers...)
}

func (h *harness) runningConsumers() []*node {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*node
	for _, n := range h.consumers {
		if !n.down && n.p != nil {
			out = append(out, n)
		}
	}
	return out
}

var httpClient = &http.Client{Timeout: time.Second}

// ready reports whether the consumer answers /readyz with 200.
func ready(n *node) bool {
	resp, err := httpClient.Get("http://" + n.addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ---- server faults ----

// listenerPIDs returns the backends of the consumers' LISTEN connections to this database.
func (h *harness) listenerPIDs(ctx context.Context, since time.Time) ([]int32, error) {
	var pids []int32
	rows, err := h.pool.Query(ctx, `
		SELECT pid FROM pg_stat_activity
		WHERE application_name = 'consumer-listener' AND datname = $1 AND backend_start > $2
		ORDER BY pid`, h.dbName, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, rows.Err()
}

// restartServer restarts PostgreSQL with scripts/pg.sh restart <mode>.
func (h *harness) restartServer(ctx context.Context, mode string) (time.Duration, error) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, h.s.pgScript, "restart", mode).CombinedOutput()
	if err != nil {
		return time.Since(start), fmt.Errorf("%s restart %s: %w: %s", h.s.pgScript, mode, err, strings.TrimSpace(string(out)))
	}
	return time.Since(start), nil
}

// ---- recovery and quiescence ----

// awaitRecovery waits until every running consumer answers /readyz 200, at least
// wantListeners LISTEN connections were opened after the fault (when wantListeners > 0), and a
// task completed after the fault (or no task is unfinished). It records the time since the
// fault and reports it as progress.
func (h *harness) awaitRecovery(ctx context.Context, at time.Time, wantListeners int) error {
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	why := "not started"
	for {
		ok := true
		for _, n := range h.runningConsumers() {
			if !ready(n) {
				ok, why = false, n.name()+" /readyz is not 200"
				break
			}
		}
		if ok && wantListeners > 0 {
			pids, err := h.listenerPIDs(ctx, at)
			if err != nil || len(pids) < wantListeners {
				ok, why = false, fmt.Sprintf("%d of %d LISTEN connections re-established", len(pids), wantListeners)
			}
		}
		if ok {
			var progressed bool
			err := h.pool.QueryRow(ctx, `
				SELECT EXISTS (SELECT 1 FROM tasker.workflow_tasks WHERE completed_at > $1)
				    OR NOT EXISTS (SELECT 1 FROM tasker.workflow_tasks WHERE state <> ALL($2::text[]))`,
				at, finishedStates()).Scan(&progressed)
			if err != nil || !progressed {
				ok, why = false, "no task completed since the fault"
			}
		}
		if ok {
			d := time.Since(at)
			h.recovered(d)
			h.progress("recovered in %s", d.Round(time.Millisecond))
			return nil
		}
		if err := timeutil.Sleep(ctx, 25*time.Millisecond); err != nil {
			return fmt.Errorf("not recovered %s after the fault: %s", recoveryTimeout, why)
		}
	}
}

// finishedStates are the task states after which nothing happens to a task.
func finishedStates() []string {
	return []string{workflow.TaskComplete, workflow.TaskError, workflow.TaskCancelled}
}

// queueState is what quiescence waits for.
type queueState struct {
	requests, results, finalizations, worker, unfinished int64
}

func (q queueState) quiet() bool {
	return q.requests == 0 && q.results == 0 && q.finalizations == 0 && q.worker == 0 && q.unfinished == 0
}

func (q queueState) String() string {
	return fmt.Sprintf("orchestration_task_requests %d, orchestration_step_results %d, orchestration_task_finalizations %d, %s %d messages; %d unfinished tasks",
		q.requests, q.results, q.finalizations, workerQueue, q.worker, q.unfinished)
}

func (h *harness) queueState(ctx context.Context) (queueState, error) {
	var q queueState
	err := h.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM pgmq.q_orchestration_task_requests),
		       (SELECT count(*) FROM pgmq.q_orchestration_step_results),
		       (SELECT count(*) FROM pgmq.q_orchestration_task_finalizations),
		       (SELECT count(*) FROM pgmq.q_worker_demo_queue),
		       (SELECT count(*) FROM tasker.workflow_tasks WHERE state <> ALL($1::text[]))`, finishedStates(),
	).Scan(&q.requests, &q.results, &q.finalizations, &q.worker, &q.unfinished)
	return q, err
}

// waitQuiescent waits until the queues are empty and no task is unfinished, twice in a row.
func (h *harness) waitQuiescent(ctx context.Context, timeout time.Duration) (queueState, bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last queueState
	quietRounds := 0
	for {
		q, err := h.queueState(ctx)
		if err == nil {
			last = q
			if q.quiet() {
				quietRounds++
				if quietRounds >= 2 {
					return q, true
				}
			} else {
				quietRounds = 0
			}
		}
		if timeutil.Sleep(ctx, 200*time.Millisecond) != nil {
			return last, false
		}
	}
}

// stopAll terminates every running process (workers first) and checks the exit codes.
func (h *harness) stopAll() {
	for _, n := range append(append([]*node{}, h.workers...), h.consumers...) {
		if n.p == nil || n.down {
			continue
		}
		select {
		case <-n.p.Done():
			continue // reported by exitedByItself
		default:
		}
		code, took, err := h.terminate(n, consumerShutdown+10*time.Second)
		switch {
		case err != nil:
			h.problemf("final SIGTERM: %v (log %s)", err, n.log)
		case code != 0:
			h.problemf("final SIGTERM: %s exited with code %d after %s (log %s)", n.name(), code, took.Round(time.Millisecond), n.log)
		}
	}
}

// send sends one message, retrying while the server is unreachable (a restart). A send whose
// commit was cut off may have committed, so the caller must tolerate a repeat: task requests
// deduplicate by their context.
func (h *harness) send(ctx context.Context, queue string, body json.RawMessage) (int64, error) {
	return retrySend(ctx, func(ctx context.Context) (int64, error) {
		return pgmq.Send(ctx, h.pool, queue, body, pgmq.SendOptions{})
	})
}

// sendBatch is send for several bodies of one queue, in one statement.
func (h *harness) sendBatch(ctx context.Context, queue string, bodies []json.RawMessage) ([]int64, error) {
	return retrySend(ctx, func(ctx context.Context) ([]int64, error) {
		return pgmq.SendBatch(ctx, h.pool, queue, bodies, pgmq.SendOptions{})
	})
}

// retrySend runs send, each try bounded to 10s, until it succeeds, fails for a reason a retry
// cannot cure (a malformed queue name), or 30s of retries have passed.
func retrySend[T any](ctx context.Context, send func(context.Context) (T, error)) (T, error) {
	for try := 0; ; try++ {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := send(sctx)
		cancel()
		if err == nil || errors.Is(err, pgmq.ErrInvalidQueueName) || try > 300 || timeutil.Sleep(ctx, 100*time.Millisecond) != nil {
			return v, err
		}
	}
}

// insertAged inserts a message directly into a queue table with a delivery count already at
// readCt: a message that was delivered too often (a poison message).
func (h *harness) insertAged(ctx context.Context, queue string, body json.RawMessage, readCt int) (int64, error) {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return 0, err
	}
	var id int64
	err := h.pool.QueryRow(ctx, fmt.Sprintf(
		`INSERT INTO pgmq.q_%s (vt, message, read_ct) VALUES (clock_timestamp(), $1::jsonb, $2) RETURNING msg_id`, queue),
		body, readCt).Scan(&id)
	return id, err
}
