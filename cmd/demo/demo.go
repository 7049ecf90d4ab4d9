package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/outcome"
	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// demo is one run: its settings, the processes it started and the tasks it submitted.
type demo struct {
	stdout      io.Writer
	stderr      *os.File
	perTemplate int
	timeout     time.Duration
	templateDir string
	databaseURL string

	templates []*template.Template
	checkable map[string]bool // by template key: the demo can compute the expected results
	pool      *pgxpool.Pool
	consumer  *proc.Process
	worker    *proc.Process
	stopOnce  sync.Once
	stopLine  string
	stopOK    bool
	bar       *progress
	barActive bool

	tasks    []*task
	dlqSince int64         // the DLQ's watermark before the submission (see dlq.Watermark)
	waited   time.Duration // from the first submission to the end of the wait
	timedOut bool
}

// task is one submitted task request and what became of it.
type task struct {
	tmpl      *template.Template
	n         int64
	requestID string
	msgID     int64

	// From outcome.Lookup: the task once it exists (tasker.task_status), or the request's fate.
	taskUUID    uuid.UUID
	state       string
	createdAt   time.Time
	completedAt *time.Time
	// From tasker.step_status after the wait.
	steps   int
	retries int
	wrong   string // the first step whose result is not the expected one
	checked bool

	deadLetter string // the DLQ reason, when the request was dead-lettered instead
	duplicate  bool   // the request was acknowledged as a duplicate of an existing task
}

func (t *task) finished() bool {
	return t.deadLetter != "" || t.duplicate || workflow.TaskFinished(t.state)
}
func (t *task) complete() bool { return t.state == workflow.TaskComplete }

// run performs the demo. An error is a setup or runtime failure; otherwise the exit status.
func (d *demo) run(ctx context.Context) (int, error) {
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w (run the demo from the consumer checkout: make demo)", err)
	}
	if d.templateDir == "" {
		d.templateDir = filepath.Join(root, "testdata", "templates")
	}
	if d.templateDir, err = filepath.Abs(d.templateDir); err != nil {
		return 0, err
	}
	if d.templates, err = template.LoadDir(d.templateDir); err != nil {
		return 0, fmt.Errorf("templates: %w", err)
	}
	if len(d.templates) == 0 {
		return 0, fmt.Errorf("templates: no template in %s", d.templateDir)
	}
	d.checkable = make(map[string]bool)
	for _, t := range d.templates {
		_, err := expectedResults(t, 1)
		d.checkable[t.Key()] = err == nil
	}

	poolCfg, err := pgxpool.ParseConfig(d.databaseURL)
	if err != nil {
		return 0, fmt.Errorf("DATABASE_URL: %w", err)
	}
	poolCfg.MaxConns = 4
	appname.Default(poolCfg.ConnConfig.RuntimeParams, "consumer-demo")
	where := fmt.Sprintf("database %q on %s:%d", poolCfg.ConnConfig.Database, poolCfg.ConnConfig.Host, poolCfg.ConnConfig.Port)
	d.say("demo: %d templates × %d tasks, %s", len(d.templates), d.perTemplate, where)
	if d.pool, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer d.pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = d.pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("%s is unreachable (check DATABASE_URL, or unset it to let make demo start a local PostgreSQL): %w", where, err)
	}

	// Build.
	binDir, err := os.MkdirTemp("", "consumer-demo-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(binDir)
	started := time.Now()
	bins, err := proc.Build(ctx, binDir)
	if err != nil {
		return 0, err
	}
	d.say("built consumer and example-worker (%s)", time.Since(started).Round(10*time.Millisecond))

	// Start the consumer, wait until it is ready, then the worker.
	logDir, err := os.MkdirTemp("", "consumer-demo-logs-")
	if err != nil {
		return 0, err
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return 0, err
	}
	defer d.stopAll()
	started = time.Now()
	d.consumer, err = proc.Start("consumer", bins.Consumer, []string{"run"}, withDefaults(
		[]string{"CONSUMER_TEMPLATE_PATH=" + d.templateDir, "CONSUMER_HTTP_ADDR=" + addr},
		"LOG_FORMAT=console"), filepath.Join(logDir, "consumer.log"))
	if err != nil {
		return 0, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	err = proc.WaitReady(readyCtx, d.consumer, addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// WaitReady includes the whole log when the process exited; keep it short.
		return 0, fmt.Errorf("consumer did not become ready: %s\n%s", textutil.FirstLine(err.Error()), tail(d.consumer.Log(), 15))
	}
	d.say("consumer ready in %s (http://%s/readyz, /metrics)", time.Since(started).Round(10*time.Millisecond), addr)
	d.worker, err = proc.Start("example-worker", bins.Worker, nil, withDefaults(
		[]string{"WORKER_NAMESPACE=" + workerNamespace(d.templates)}, "LOG_FORMAT=console"),
		filepath.Join(logDir, "example-worker.log"))
	if err != nil {
		return 0, err
	}
	d.say("logs: %s", logDir)

	d.noteBacklog(ctx)
	if err := d.submit(ctx); err != nil {
		return 0, err
	}
	if err := d.wait(ctx); err != nil {
		return 0, err
	}
	// The tasks' steps are read even when interrupted: the summary says what happened so far.
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	err = d.readSteps(readCtx)
	cancel()
	if err != nil {
		return 0, err
	}
	sum := summarize(d.templates, d.tasks)
	d.printSummary(sum)
	d.stopAll()
	fmt.Fprintln(d.stdout, d.stopLine)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(d.stderr, "demo: interrupted")
		return exitInterrupted, nil
	case !sum.total.ok() || !d.stopOK:
		return exitFailure, nil
	}
	return exitOK, nil
}

// withDefaults returns env plus each of defaults ("KEY=value") that the environment does not set.
func withDefaults(env []string, defaults ...string) []string {
	for _, kv := range defaults {
		key, _, _ := strings.Cut(kv, "=")
		if _, set := os.LookupEnv(key); !set {
			env = append(env, kv)
		}
	}
	return env
}

// workerNamespace is the namespace the example worker serves: the templates' (demo).
func workerNamespace(ts []*template.Template) string {
	if len(ts) > 0 {
		return ts[0].Namespace
	}
	return "demo"
}

// noteBacklog mentions unfinished tasks left in the database (by an interrupted run, say): the
// consumer and the worker run them too, so this run's tasks may take longer.
func (d *demo) noteBacklog(ctx context.Context) {
	var n int
	err := d.pool.QueryRow(ctx, `SELECT count(*) FROM tasker.task_status WHERE state <> ALL($1::text[])`,
		[]string{workflow.TaskComplete, workflow.TaskError, workflow.TaskCancelled}).Scan(&n)
	if err == nil && n > 0 {
		d.say("note: %d unfinished tasks from earlier runs are in the database; they run too", n)
	}
}

// submit enqueues perTemplate task requests per template, interleaved, with context
// {"n": i, "demo_run": nonce}.
func (d *demo) submit(ctx context.Context) error {
	nonce := make([]byte, 4)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	run := hex.EncodeToString(nonce)
	bodies := make([]json.RawMessage, 0, d.perTemplate*len(d.templates))
	for i := 1; i <= d.perTemplate; i++ {
		for _, t := range d.templates {
			req, err := messages.NewTaskRequest(messages.TaskRequestSpec{
				Namespace: t.Namespace, Name: t.Name, Version: t.Version,
				Context:   json.RawMessage(fmt.Sprintf(`{"n":%d,"demo_run":%q}`, i, run)),
				Initiator: "consumer-demo", SourceSystem: "demo", Reason: "make demo", Tags: []string{"demo"},
			}, "consumer-demo", time.Now())
			if err != nil {
				return err
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			bodies = append(bodies, body)
			d.tasks = append(d.tasks, &task{tmpl: t, n: int64(i), requestID: req.RequestID})
		}
	}
	// Before the send: the dead letters of these requests, if any, lie above it.
	var err error
	if d.dlqSince, err = dlq.Watermark(ctx, d.pool); err != nil {
		return err
	}
	for from := 0; from < len(bodies); from += submitChunk {
		to := min(from+submitChunk, len(bodies))
		ids, err := pgmq.SendBatch(ctx, d.pool, messages.QueueTaskRequests, bodies[from:to], pgmq.SendOptions{})
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		for i, id := range ids {
			d.tasks[from+i].msgID = id
		}
	}
	d.say("submitted %d task requests (run %s)", len(bodies), run)
	return nil
}

// wait follows the tasks until all have finished, the timeout passes, ctx ends or a process
// dies, drawing the progress bar.
func (d *demo) wait(ctx context.Context) error {
	start := time.Now()
	waitCtx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	d.bar, d.barActive = newProgress(d.stderr), true
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if err := d.refresh(waitCtx); err != nil && waitCtx.Err() == nil {
			return err
		}
		complete, failed, finished := d.counts()
		line := progressLine(complete, failed, len(d.tasks), time.Since(start))
		if finished == len(d.tasks) {
			d.waited = time.Since(start)
			d.bar.finish(line)
			d.barActive = false
			return nil
		}
		d.bar.update(line)
		select {
		case <-waitCtx.Done():
			d.waited = time.Since(start)
			d.bar.finish(line)
			d.barActive = false
			d.timedOut = ctx.Err() == nil
			return nil
		case <-d.consumer.Done():
			return d.died(d.consumer)
		case <-d.worker.Done():
			return d.died(d.worker)
		case <-tick.C:
		}
	}
}

// died reports a process that exited during the run, with the end of its log.
func (d *demo) died(p *proc.Process) error {
	d.progressDone()
	return fmt.Errorf("%s exited unexpectedly (exit code %d); the end of %s:\n%s", p.Name, p.ExitCode(), p.LogPath, tail(p.Log(), 15))
}

// counts returns the complete tasks, the finished ones that did not complete (error,
// cancelled, dead-lettered), and all finished ones.
func (d *demo) counts() (complete, failed, finished int) {
	for _, t := range d.tasks {
		switch {
		case t.complete():
			complete++
		case t.finished():
			failed++
		}
	}
	return complete, failed, complete + failed
}

// refresh looks up what became of the requests not finished yet (outcome.Lookup): their
// tasks' state and times, or their dead letter.
func (d *demo) refresh(ctx context.Context) error {
	var open []*task
	var reqs []outcome.Request
	for _, t := range d.tasks {
		if !t.finished() {
			open = append(open, t)
			reqs = append(reqs, outcome.Request{RequestID: t.requestID, MsgID: t.msgID})
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	outs, err := outcome.Lookup(ctx, d.pool, d.dlqSince, reqs)
	if err != nil {
		return err
	}
	for i, o := range outs {
		t := open[i]
		switch o.Kind {
		case outcome.Created:
			t.taskUUID, t.state, t.createdAt, t.completedAt = o.Task.TaskUUID, o.Task.State, o.Task.CreatedAt, o.Task.CompletedAt
		case outcome.DeadLettered:
			t.deadLetter = o.DeadLetter.Reason + ": " + o.DeadLetter.Error
		case outcome.Duplicate:
			t.duplicate = true
		}
	}
	return nil
}

// readSteps reads every task's steps from tasker.step_status: retries, and each step's result
// compared with the value the example worker must have computed.
func (d *demo) readSteps(ctx context.Context) error {
	byUUID := make(map[uuid.UUID]*task)
	var ids []uuid.UUID
	for _, t := range d.tasks {
		if t.taskUUID != uuid.Nil {
			byUUID[t.taskUUID], ids = t, append(ids, t.taskUUID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	want := make(map[*task]map[string]*big.Int)
	for _, t := range d.tasks {
		if d.checkable[t.tmpl.Key()] && t.complete() {
			if w, err := expectedResults(t.tmpl, t.n); err == nil {
				want[t], t.checked = w, true
			}
		}
	}
	rows, err := d.pool.Query(ctx, `SELECT task_uuid, name, attempts, result
		FROM tasker.step_status WHERE task_uuid = ANY($1::uuid[])`, ids)
	if err != nil {
		return fmt.Errorf("read step status: %w", err)
	}
	var taskUUID uuid.UUID
	var name string
	var attempts int
	var result []byte
	_, err = pgx.ForEachRow(rows, []any{&taskUUID, &name, &attempts, &result}, func() error {
		t := byUUID[taskUUID]
		if t == nil {
			return nil
		}
		t.steps++
		t.retries += max(attempts-1, 0)
		if w := want[t]; w != nil && t.wrong == "" {
			switch exp, ok := w[name]; {
			case !ok:
				t.wrong = fmt.Sprintf("step %s is not in the template", name)
			case !sameNumber(result, exp):
				t.wrong = fmt.Sprintf("step %s returned %s, want %s", name, orNull(result), exp)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read step status: %w", err)
	}
	return nil
}

func orNull(b []byte) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}

// stopAll sends SIGTERM to the worker and the consumer at once and waits for both to exit.
// It records whether both exited 0. Safe to call more than once.
func (d *demo) stopAll() {
	d.stopOnce.Do(func() {
		started := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var problems []string
		for _, p := range []*proc.Process{d.worker, d.consumer} {
			if p == nil {
				continue
			}
			wg.Go(func() {
				code, _, err := p.Terminate(stopTimeout)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				case code != 0:
					problems = append(problems, fmt.Sprintf("%s exited with code %d (log: %s)", p.Name, code, p.LogPath))
				}
			})
		}
		wg.Wait()
		d.stopOK = len(problems) == 0
		if d.stopOK {
			d.stopLine = fmt.Sprintf("stopped the consumer and the example worker with SIGTERM: both exited 0 (%s)",
				time.Since(started).Round(time.Millisecond))
		} else {
			d.stopLine = "FAILED to stop cleanly: " + strings.Join(problems, "; ")
		}
	})
}

// say prints a setup line on stderr.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.stderr, format+"\n", args...)
}

// progressDone ends an unfinished progress line before anything else is printed.
func (d *demo) progressDone() {
	if d.barActive && d.bar.terminal {
		fmt.Fprintln(d.stderr)
	}
	d.barActive = false
}

// tail returns the last n lines of s, indented.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
