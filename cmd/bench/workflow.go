package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/worker"
	"github.com/tasker-systems/consumer/workflow"
)

// Worker settings of the in-process no-op worker.
const (
	workerConcurrency  = 16
	workerPoolConns    = workerConcurrency + 4
	workerPollInterval = 200 * time.Millisecond
	e2eWarmup          = 3
)

// inProcessWorker is a no-op worker (every callable returns 1) running in this process.
type inProcessWorker struct {
	w       *worker.Worker
	pool    *pgxpool.Pool
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
	stopErr error
}

// startWorker runs the no-op worker; h, if not nil, records when each handler starts.
func (e *env) startWorker(ctx context.Context, url string, h *hops) (*inProcessWorker, error) {
	pool, err := newPool(ctx, url, workerPoolConns, "bench-worker")
	if err != nil {
		return nil, err
	}
	w := &worker.Worker{Pool: pool, ListenConnString: url, Namespace: "demo", Concurrency: workerConcurrency,
		PollInterval: workerPollInterval, WorkerID: "bench"}
	seen := map[string]bool{}
	for _, t := range e.templates {
		for _, s := range t.Steps {
			if t.Namespace == "demo" && !seen[s.Handler.Callable] {
				seen[s.Handler.Callable] = true
				w.Handle(s.Handler.Callable, func(_ context.Context, step worker.Step) (any, error) {
					if h != nil {
						h.workerStarted(step, time.Now())
					}
					return 1, nil
				})
			}
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	p := &inProcessWorker{w: w, pool: pool, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- w.Run(runCtx) }()
	return p, nil
}

// stop stops the worker and closes its pool; only the first call does anything.
func (p *inProcessWorker) stop() error {
	p.stopped.Do(func() {
		p.cancel()
		select {
		case p.stopErr = <-p.done:
		case <-time.After(30 * time.Second):
			p.stopErr = errors.New("in-process worker did not stop within 30s")
		}
		p.pool.Close()
	})
	return p.stopErr
}

// finishSignal wraps the engine's handlers and announces, on finished, each task that a
// handler has just finished (before its transaction commits). It records handler times in hops.
type finishSignal struct {
	eng      *workflow.Engine
	finished chan uuid.UUID
	hops     *hops
}

func (f *finishSignal) handlers() actor.Handlers {
	return actor.Handlers{Task: f, Step: f, Finalization: f}
}

// InitializeTasks implements actor.TaskHandler.
func (f *finishSignal) InitializeTasks(ctx context.Context, tx pgx.Tx, reqs []messages.TaskRequest) ([]actor.Result[commands.TaskInitializeResult], error) {
	out, err := f.eng.InitializeTasks(ctx, tx, reqs)
	if err == nil {
		now := time.Now()
		for _, r := range out {
			if r.Err == nil {
				f.hops.taskInitialized(r.Value.TaskUUID, now)
			}
		}
	}
	return out, err
}

func (f *finishSignal) announce(fin *commands.TaskFinalizationResult) {
	if fin != nil && workflow.TaskFinished(fin.State) {
		select {
		case f.finished <- fin.TaskUUID:
		default:
		}
	}
}

// ProcessStepResults implements actor.StepHandler.
func (f *finishSignal) ProcessStepResults(ctx context.Context, tx pgx.Tx, results []messages.StepResult) ([]actor.Result[commands.StepProcessResult], error) {
	start := time.Now()
	for _, res := range results {
		f.hops.resultStarted(res.StepUUID, start)
	}
	out, err := f.eng.ProcessStepResults(ctx, tx, results)
	if err == nil {
		now := time.Now()
		for i, r := range out {
			if r.Err == nil {
				f.hops.resultFinished(results[i].StepUUID, now)
				f.announce(r.Value.Final)
			}
		}
	}
	return out, err
}

// FinalizeTasks implements actor.FinalizationHandler.
func (f *finishSignal) FinalizeTasks(ctx context.Context, tx pgx.Tx, tasks []uuid.UUID) ([]actor.Result[commands.TaskFinalizationResult], error) {
	out, err := f.eng.FinalizeTasks(ctx, tx, tasks)
	if err == nil {
		for _, r := range out {
			if r.Err == nil && r.Value.Changed {
				f.announce(&r.Value)
			}
		}
	}
	return out, err
}

func runE2ELinear(ctx context.Context, e *env, run int) (runResult, error) {
	return runE2E(ctx, e, run, "linear")
}

func runE2EDiamond(ctx context.Context, e *env, run int) (runResult, error) {
	return runE2E(ctx, e, run, "diamond")
}

// runE2E runs tasks of one template one at a time through the in-process consumer (real
// engine) and the in-process no-op worker.
func runE2E(ctx context.Context, e *env, run int, name string) (runResult, error) {
	db, err := e.newDB(ctx, 2)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	if err := workflow.Register(ctx, db.pool, e.templates, nil); err != nil {
		return runResult{}, err
	}
	cfg, err := defaultConfig(ctx, db.url, config.ModeHybrid)
	if err != nil {
		return runResult{}, err
	}
	sig := &finishSignal{eng: workflow.NewEngine(workflow.EngineOptions{}), finished: make(chan uuid.UUID, 16), hops: newHops()}
	svc, err := startService(ctx, cfg, sig.handlers())
	if err != nil {
		return runResult{}, err
	}
	defer func() { _ = svc.stop() }()
	if err := svc.waitReady(ctx); err != nil {
		return runResult{}, err
	}
	wk, err := e.startWorker(ctx, db.url, sig.hops)
	if err != nil {
		return runResult{}, err
	}
	defer func() { _ = wk.stop() }()
	if err := warmPool(ctx, db.pool, 2); err != nil {
		return runResult{}, err
	}

	var e2e, pickup []time.Duration
	steps := 0
	for i := range e.opts.E2ETasks + e2eWarmup {
		reqID := fmt.Sprintf("e2e-%s-%d-%d", name, run, i)
		body := taskRequest(reqID, name, fmt.Sprintf(`{"n":%d,"run":%d,"i":%d}`, i%7+1, run, i))
		for len(sig.finished) > 0 { // stale signals (there should be none)
			<-sig.finished
		}
		t0 := time.Now()
		if _, err := pgmq.Send(ctx, db.pool, messages.QueueTaskRequests, body, pgmq.SendOptions{}); err != nil {
			return runResult{}, err
		}
		task, err := waitTask(ctx, db.pool, reqID, sig.finished)
		if err != nil {
			return runResult{}, err
		}
		if task.State != workflow.TaskComplete {
			return runResult{}, fmt.Errorf("task %s (%s) ended %s: %d/%d steps complete, %d in error",
				task.TaskUUID, reqID, task.State, task.StepsComplete, task.StepsTotal, task.StepsError)
		}
		if i < e2eWarmup {
			continue
		}
		e2e = append(e2e, task.CompletedAt.Sub(t0))
		pickup = append(pickup, task.CreatedAt.Sub(t0))
		steps = task.StepsTotal
	}
	l, p := latencies(e2e), latencies(pickup)
	tw, tc, hd := sig.hops.split()
	toWorker, toConsumer, handler := latencies(tw), latencies(tc), latencies(hd)
	return runResult{
		values: map[string]float64{name + "_e2e_p50": l.P50, name + "_e2e_p99": l.P99, name + "_pickup_p50": p.P50},
		detail: map[string]any{"e2e": l, "submit_to_created": p, "steps_per_task": steps, "tasks": len(e2e),
			"worker_concurrency": workerConcurrency, "worker_poll_interval": workerPollInterval.String(),
			"per_step": map[string]any{"dispatch_to_worker_handler": toWorker, "worker_handler_to_consumer_handler": toConsumer,
				"consumer_step_handler": handler}},
		summary: fmt.Sprintf("p50 %s, p99 %s, max %s; submit→created p50 %s; per step p50: →worker %s, →consumer %s, handler %s (%d tasks)",
			formatValue(l.P50, "ms"), formatValue(l.P99, "ms"), formatValue(l.Max, "ms"), formatValue(p.P50, "ms"),
			formatValue(toWorker.P50, "ms"), formatValue(toConsumer.P50, "ms"), formatValue(handler.P50, "ms"), l.N),
	}, nil
}

// waitTask waits for the signal that a task finished, then reads the request's task until its
// completion is visible (the signal comes just before the commit).
func waitTask(ctx context.Context, db pgmq.DB, requestID string, finished <-chan uuid.UUID) (workflow.TaskStatus, error) {
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	select {
	case <-finished:
	case <-timeout.C:
		return workflow.TaskStatus{}, fmt.Errorf("task of request %s did not finish within 15s", requestID)
	case <-ctx.Done():
		return workflow.TaskStatus{}, ctx.Err()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := workflow.FindTaskByRequestID(ctx, db, requestID)
		if err != nil && !errors.Is(err, workflow.ErrTaskNotFound) {
			return task, err
		}
		if err == nil && task.CompletedAt != nil {
			return task, nil
		}
		if time.Now().After(deadline) {
			return task, fmt.Errorf("task of request %s signalled finished but not visible as such after 5s (state %q)", requestID, task.State)
		}
		if err := sleep(ctx, 200*time.Microsecond); err != nil {
			return task, err
		}
	}
}

// benchWorker is a worker of the saturation scenarios.
type benchWorker interface {
	Processed() uint64
	stop() error
}

// Processed returns the dispatches the SDK worker finished.
func (p *inProcessWorker) Processed() uint64 { return p.w.Processed() }

// runSaturation runs the saturation scenario with the SDK worker.
func runSaturation(ctx context.Context, e *env, run int) (runResult, error) {
	return saturation(ctx, e, run, "saturation", func(ctx context.Context, url string) (benchWorker, error) {
		return e.startWorker(ctx, url, nil)
	})
}

// runSaturationPlain runs the saturation scenario with the plain PGMQ worker.
func runSaturationPlain(ctx context.Context, e *env, run int) (runResult, error) {
	return saturation(ctx, e, run, "saturation_plain", func(ctx context.Context, url string) (benchWorker, error) {
		return startPlainWorker(ctx, url)
	})
}

// saturation submits many diamond tasks at once to the consumer binary, worked by the worker
// that start starts, and measures how fast they complete, then reads the process's peak RSS.
// Its figures are named key_*, except the RSS which only the SDK run reports.
func saturation(ctx context.Context, e *env, run int, key string, start func(context.Context, string) (benchWorker, error)) (runResult, error) {
	bins, err := e.binaries(ctx)
	if err != nil {
		return runResult{}, err
	}
	ph := newPhases()
	db, err := e.newDB(ctx, 2)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	ph.mark("create_db")
	addr, err := proc.FreeAddr()
	if err != nil {
		return runResult{}, err
	}
	logPath := filepath.Join(e.tmp, fmt.Sprintf("consumer-%s-%d.log", key, run))
	p, err := proc.Start("consumer", bins.Consumer, []string{"run"}, []string{
		"DATABASE_URL=" + db.url, "LISTEN_DATABASE_URL=",
		"CONSUMER_TEMPLATE_PATH=" + filepath.Join(e.root, "testdata", "templates"),
		"CONSUMER_HTTP_ADDR=" + addr,
	}, logPath)
	if err != nil {
		return runResult{}, err
	}
	defer p.Stop()
	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = proc.WaitReady(readyCtx, p, addr)
	cancel()
	if err != nil {
		return runResult{}, err
	}
	ph.mark("consumer_start")
	wk, err := start(ctx, db.url)
	if err != nil {
		return runResult{}, err
	}
	defer func() { _ = wk.stop() }()
	if err := warmPool(ctx, db.pool, 2); err != nil {
		return runResult{}, err
	}

	n := e.opts.SaturationTasks
	bodies := make([]json.RawMessage, n)
	for i := range bodies {
		bodies[i] = taskRequest(fmt.Sprintf("sat-%d-%d", run, i), "diamond", fmt.Sprintf(`{"n":%d,"run":%d,"i":%d}`, i%7+1, run, i))
	}
	statements := resetStatements(ctx, db.pool)
	cpu0, err := cpuSnapshot(ctx, db.pool, p.Pid())
	if err != nil {
		return runResult{}, err
	}
	t0 := time.Now()
	if _, err := pgmq.SendBatch(ctx, db.pool, messages.QueueTaskRequests, bodies, pgmq.SendOptions{}); err != nil {
		return runResult{}, err
	}
	var (
		finished, complete, created, steps int
		last                               *time.Time
		depth                              = newBacklog(messages.QueueTaskRequests, messages.QueueStepResults, messages.WorkerQueue("demo"))
		waits                              = map[string]int{}
	)
	// Polled every 100 ms: the figure comes from completed_at, so the poll period only delays
	// noticing the end; a faster poll would take CPU from the measured processes.
	deadline := t0.Add(time.Minute + time.Duration(n)*20*time.Millisecond)
	for {
		var tr, sr, wq int
		err := db.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE completed_at IS NOT NULL)::int,
			count(*) FILTER (WHERE state = 'complete')::int, count(*)::int, COALESCE(sum(steps_total), 0)::int, max(completed_at),
			(SELECT count(*)::int FROM pgmq.q_orchestration_task_requests),
			(SELECT count(*)::int FROM pgmq.q_orchestration_step_results),
			(SELECT count(*)::int FROM pgmq.q_worker_demo_queue)
			FROM tasker.task_status`).Scan(&finished, &complete, &created, &steps, &last, &tr, &sr, &wq)
		if err != nil {
			return runResult{}, err
		}
		if finished >= n {
			break
		}
		depth.add(tr, sr, wq)
		if err := sampleWaits(ctx, db.pool, waits); err != nil {
			return runResult{}, err
		}
		select {
		case <-p.Done():
			return runResult{}, fmt.Errorf("consumer exited with code %d during the run; log: %s", p.ExitCode(), logPath)
		default:
		}
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("%d of %d tasks finished (%d created) before the deadline", finished, n, created)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return runResult{}, err
		}
	}
	ph.mark("run")
	batches := consumerBatchStats(ctx, addr)
	scans := tableScans(ctx, db.pool)
	hwm, rss, err := procMemory(p.Pid())
	if err != nil {
		return runResult{}, err
	}
	cpu1, err := cpuSnapshot(ctx, db.pool, p.Pid())
	if err != nil {
		return runResult{}, err
	}
	cpu := cpu1.since(cpu0)
	var top []statementStat
	if statements {
		if top, err = topStatements(ctx, db.pool, 15, steps); err != nil {
			return runResult{}, err
		}
		printStatements(e.stderr, fmt.Sprintf("%s run %d: top statements", key, run), top)
	}
	if err := wk.stop(); err != nil {
		return runResult{}, err
	}
	ph.mark("diagnostics_and_worker_stop")
	code, stopTook, err := p.Terminate(30 * time.Second)
	if err != nil {
		return runResult{}, err
	}
	if code != 0 {
		return runResult{}, fmt.Errorf("consumer exited with code %d after SIGTERM; log: %s", code, logPath)
	}
	elapsed := last.Sub(t0)
	if complete != n {
		return runResult{}, fmt.Errorf("%d of %d tasks complete (the others ended in error)", complete, n)
	}
	errorLines := countErrorLines(logPath)
	tasksPerS, stepsPerS := float64(n)/elapsed.Seconds(), float64(steps)/elapsed.Seconds()
	summary := fmt.Sprintf("%s tasks/s, %s steps/s (%d tasks in %s), peak RSS %s",
		formatValue(tasksPerS, ""), formatValue(stepsPerS, ""), n, elapsed.Round(time.Millisecond), formatValue(hwm, "MB"))
	summary += fmt.Sprintf("; CPU per step: consumer %.2f ms + its backends %.2f ms, worker %.2f ms + its backends %.2f ms; mean backlog %s",
		1000*cpu["consumer_process"]/float64(steps), 1000*cpu["consumer_backends"]/float64(steps),
		1000*cpu["worker_process"]/float64(steps), 1000*cpu["worker_backends"]/float64(steps), depth.short())
	if errorLines > 0 {
		summary += fmt.Sprintf(", %d error lines in the consumer log", errorLines)
	}
	values := map[string]float64{key + "_tasks": tasksPerS, key + "_steps": stepsPerS,
		key + "_cpu_consumer":  1000 * (cpu["consumer_process"] + cpu["consumer_backends"]) / float64(steps),
		key + "_cpu_worker_db": 1000 * cpu["worker_backends"] / float64(steps),
		key + "_cpu_worker":    1000 * (cpu["worker_process"] + cpu["worker_backends"]) / float64(steps)}
	if key == "saturation" {
		values["consumer_rss"] = hwm
	}
	return runResult{
		values: values,
		detail: map[string]any{"tasks": n, "steps": steps, "elapsed_s": elapsed.Seconds(), "vm_hwm_mb": hwm, "vm_rss_mb": rss,
			"sigterm_exit_s": stopTook.Seconds(), "consumer_log_error_lines": errorLines, "worker_processed": wk.Processed(),
			"worker_concurrency":     workerConcurrency,
			"queue_depth_during_run": depth.report(), "db_wait_events_during_run": topWaits(waits, 12),
			"consumer_batches": batches, "cpu_ms_per_step": cpu.perStep(steps), "cpu_seconds": cpu,
			"table_scans": scans, "phases_s": ph.m, "top_statements": top},
		summary: summary,
	}, nil
}

// procMemory returns VmHWM and VmRSS of a process in MiB.
func procMemory(pid int) (hwm, rss float64, err error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	parse := func(key string) (float64, error) {
		v := procField(path, key)
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: no %s", path, key)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		return kb / 1024, err
	}
	if hwm, err = parse("VmHWM"); err != nil {
		return 0, 0, err
	}
	rss, err = parse("VmRSS")
	return hwm, rss, err
}

// countErrorLines counts the consumer's error-level JSON log lines.
func countErrorLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			n++
		}
	}
	return n
}

// backlog accumulates queue depth samples.
type backlog struct {
	queues  []string
	sum     []int
	max     []int
	samples int
}

func newBacklog(queues ...string) *backlog {
	return &backlog{queues: queues, sum: make([]int, len(queues)), max: make([]int, len(queues))}
}

func (b *backlog) add(depths ...int) {
	for i, d := range depths {
		b.sum[i] += d
		b.max[i] = max(b.max[i], d)
	}
	b.samples++
}

func (b *backlog) report() map[string]any {
	out := map[string]any{"samples": b.samples}
	for i, q := range b.queues {
		out[q] = map[string]any{"max": b.max[i], "mean": float64(b.sum[i]) / float64(max(b.samples, 1))}
	}
	return out
}

// short names the mean depth of each queue: where the work waits.
func (b *backlog) short() string {
	var parts []string
	for i, q := range b.queues {
		parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimPrefix(q, "orchestration_"), float64(b.sum[i])/float64(max(b.samples, 1))))
	}
	return strings.Join(parts, ", ")
}

// sampleWaits counts what the database's busy sessions are doing, by application and wait.
func sampleWaits(ctx context.Context, db pgmq.DB, into map[string]int) error {
	rows, err := db.Query(ctx, `SELECT application_name || ' ' || state || ' ' ||
		COALESCE(wait_event_type || ':' || wait_event, 'on CPU') ||
		CASE WHEN wait_event_type = 'Lock' THEN ' (' || left(regexp_replace(query, '\s+', ' ', 'g'), 40) || ')' ELSE '' END
		FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND state NOT IN ('idle')
		  AND application_name <> 'bench-driver'`)
	if err != nil {
		return err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, k := range keys {
		into[k]++
	}
	return nil
}

// topWaits returns the n most frequent wait samples, most frequent first.
func topWaits(counts map[string]int, n int) []string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range counts {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(b.v-a.v, strings.Compare(a.k, b.k)) })
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%d× %s", all[i].v, all[i].k))
	}
	return out
}

// consumerBatchStats reads the consumer's /metrics and returns, per queue, the mean batch size
// and transaction duration and the mean handler time (nil when /metrics cannot be read).
func consumerBatchStats(ctx context.Context, addr string) map[string]any {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	vals := map[string]float64{} // "metric{labels}" → value
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			vals[line[:i]] = v
		}
	}
	out := map[string]any{}
	for _, q := range []string{messages.QueueTaskRequests, messages.QueueStepResults, messages.QueueTaskFinalizations} {
		l := `{queue="` + q + `"}`
		n := vals["consumer_batch_size_count"+l]
		if n == 0 {
			continue
		}
		m := map[string]any{
			"batches":         n,
			"mean_batch_size": vals["consumer_batch_size_sum"+l] / n,
			"mean_batch_ms":   vals["consumer_batch_duration_seconds_sum"+l] / n * 1000,
			"aborted_batches": vals["consumer_batch_aborted_total"+l],
		}
		if hn := vals["consumer_handler_duration_seconds_count"+l]; hn > 0 {
			m["mean_handler_ms"] = vals["consumer_handler_duration_seconds_sum"+l] / hn * 1000
		}
		for _, o := range []string{"processed", "skipped", "not_found", "failed", "dead_lettered"} {
			if v := vals[`consumer_messages_processed_total{outcome="`+o+`",queue="`+q+`"}`]; v > 0 {
				m[o] = v
			}
		}
		out[q] = m
	}
	return out
}

// clockTick is the kernel's USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on
// every mainstream Linux architecture).
const clockTick = 100

// cpuTimes is CPU time (user + system, seconds) by consumer: the consumer process and the
// PostgreSQL backends serving the consumer and the worker, by pid.
type cpuTimes struct {
	process  float64
	self     float64 // this process, which hosts the worker of the saturation scenarios
	backends map[int]backendCPU
}

type backendCPU struct {
	app string
	cpu float64
}

// cpuSnapshot reads the CPU time used so far by the consumer process and by every backend of
// the database (identified through pg_stat_activity; same machine, so /proc is readable).
func cpuSnapshot(ctx context.Context, db pgmq.DB, pid int) (cpuTimes, error) {
	t := cpuTimes{backends: map[int]backendCPU{}}
	var err error
	if t.process, err = procCPU(pid); err != nil {
		return t, err
	}
	if t.self, err = procCPU(os.Getpid()); err != nil {
		return t, err
	}
	rows, err := db.Query(ctx, `SELECT pid, application_name FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return t, err
	}
	type row struct {
		Pid int
		App string
	}
	bs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return t, err
	}
	for _, b := range bs {
		if c, err := procCPU(b.Pid); err == nil { // a backend may have exited meanwhile
			t.backends[b.Pid] = backendCPU{app: b.App, cpu: c}
		}
	}
	return t, nil
}

// since returns the CPU seconds used between before and t: the consumer process, its backends
// (application_name consumer*), this process (the worker, and the driver's polls every 100 ms)
// and the worker's backends (bench-worker*). A backend that
// started after before counts from zero; one that exited in between is not counted.
func (t cpuTimes) since(before cpuTimes) cpuDelta {
	out := cpuDelta{"consumer_process": t.process - before.process, "worker_process": t.self - before.self,
		"consumer_backends": 0, "worker_backends": 0}
	for pid, b := range t.backends {
		d := b.cpu - before.backends[pid].cpu
		switch {
		case strings.HasPrefix(b.app, "consumer"):
			out["consumer_backends"] += d
		case strings.HasPrefix(b.app, "bench-worker"):
			out["worker_backends"] += d
		}
	}
	return out
}

// perStep converts CPU seconds into CPU milliseconds per workflow step.
func (m cpuDelta) perStep(steps int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = 1000 * v / float64(max(steps, 1))
	}
	return out
}

// cpuDelta is CPU seconds by consumer of CPU.
type cpuDelta map[string]float64

// procCPU returns the user + system CPU seconds of a process from /proc/<pid>/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it are space-separated.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / clockTick, nil
}

// tableScans reports, for the tables read by sequential scan, how many scans and rows that took
// (from pg_stat_all_tables, so that a missing index shows); most rows read first.
func tableScans(ctx context.Context, db pgmq.DB) []string {
	rows, err := db.Query(ctx, `SELECT format('%s.%s: %s seq scans reading %s rows; %s index scans; %s live, %s dead rows',
			schemaname, relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), n_live_tup, n_dead_tup)
		FROM pg_stat_all_tables
		WHERE schemaname IN ('tasker', 'pgmq') AND seq_tup_read > 0
		ORDER BY seq_tup_read DESC LIMIT 10`)
	if err != nil {
		return []string{err.Error()}
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return []string{err.Error()}
	}
	return out
}

// phases records how long each part of a run took (for the JSON detail).
type phases struct {
	last time.Time
	m    map[string]float64
}

func newPhases() *phases { return &phases{last: time.Now(), m: map[string]float64{}} }

func (p *phases) mark(name string) {
	now := time.Now()
	p.m[name] = now.Sub(p.last).Seconds()
	p.last = now
}
