package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/template"
)

// env is what every scenario shares: the server, the module, a temp dir, the built binaries.
type env struct {
	opts      Options
	admin     string // server connection string (DATABASE_URL)
	root      string // module root
	tmp       string // removed at the end
	templates []*template.Template
	pgmq      string // PGMQ flavour of the migrated databases
	stderr    io.Writer
	bins      *proc.Binaries // built on first use
}

func newEnv(ctx context.Context, opts Options, stderr io.Writer) (*env, error) {
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		admin = os.Getenv("TEST_DATABASE_URL")
	}
	if admin == "" {
		return nil, errors.New("DATABASE_URL is not set: run `make bench`, which starts a local PostgreSQL")
	}
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	templates, err := template.LoadDir(filepath.Join(root, "testdata", "templates"))
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "consumer-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{opts: opts, admin: admin, root: root, tmp: tmp, templates: templates, stderr: stderr}
	// One database up front: it builds the migrated template database if needed (so the first
	// scenario does not pay for it) and tells which PGMQ is in use.
	db, err := e.newDB(ctx, 1)
	if err != nil {
		e.close(false)
		return nil, err
	}
	e.pgmq = pgmqFlavour(ctx, db.pool)
	db.close()
	return e, nil
}

// close removes the temp dir, unless keep (then its logs are worth reading).
func (e *env) close(keep bool) {
	if keep {
		fmt.Fprintln(e.stderr, "bench: kept", e.tmp, "(binaries and consumer logs)")
		return
	}
	_ = os.RemoveAll(e.tmp)
}

// binaries builds cmd/consumer (and cmd/example-worker, which proc.Build builds alongside) into
// the temp dir, once.
func (e *env) binaries(ctx context.Context) (proc.Binaries, error) {
	if e.bins != nil {
		return *e.bins, nil
	}
	b, err := proc.Build(ctx, e.tmp)
	if err != nil {
		return proc.Binaries{}, err
	}
	e.bins = &b
	return b, nil
}

// benchDB is one scenario run's database with a pool for the benchmark's own queries.
type benchDB struct {
	url, name string
	admin     string
	pool      *pgxpool.Pool
}

// newDB creates a fresh migrated database and a pool of maxConns connections to it.
func (e *env) newDB(ctx context.Context, maxConns int32) (*benchDB, error) {
	url, name, err := testdb.Create(ctx, e.admin, "consumer_bench")
	if err != nil {
		return nil, err
	}
	db := &benchDB{url: url, name: name, admin: e.admin}
	db.pool, err = newPool(ctx, url, maxConns, "bench-driver")
	if err != nil {
		db.close()
		return nil, err
	}
	return db, nil
}

// close closes the pool and drops the database, even when ctx was cancelled.
func (db *benchDB) close() {
	if db.pool != nil {
		db.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = testdb.Drop(ctx, db.admin, db.name)
}

func newPool(ctx context.Context, url string, maxConns int32, app string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// warmPool opens n connections of pool now, so the timed part does not pay for connecting.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

// defaultConfig is the consumer's configuration with every default (as `consumer run` would
// load it from an environment that sets only DATABASE_URL), in the given mode.
func defaultConfig(ctx context.Context, url string, mode config.Mode) (*config.Config, error) {
	return config.LoadFrom(ctx, envconfig.MapLookuper(map[string]string{
		"DATABASE_URL": url, "CONSUMER_MODE": string(mode),
	}))
}

// inProcess is a consumer service running in this process.
type inProcess struct {
	svc     *service.Service
	pool    *pgxpool.Pool
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
	stopErr error
}

// startService builds the service with cfg and handlers (its own pool, sized like the
// consumer's: cfg.DBMaxConns) and runs it. It does not wait for readiness.
func startService(ctx context.Context, cfg *config.Config, handlers actor.Handlers) (*inProcess, error) {
	pool, err := newPool(ctx, cfg.DatabaseURL, int32(cfg.DBMaxConns), "consumer")
	if err != nil {
		return nil, err
	}
	svc, err := service.New(cfg, pool, handlers, zap.NewNop(), nil)
	if err != nil {
		pool.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	p := &inProcess{svc: svc, pool: pool, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- svc.Run(runCtx) }()
	return p, nil
}

// waitReady waits until the service's readiness checks pass (the listener is connected).
func (p *inProcess) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := p.svc.Ready(ctx)
		if r.Ready {
			return nil
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(r.Checks)
			return fmt.Errorf("in-process consumer not ready after 15s: %s", b)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-p.done:
			return fmt.Errorf("in-process consumer stopped: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop stops the service and closes its pool; only the first call does anything.
func (p *inProcess) stop() error {
	p.stopped.Do(func() {
		p.cancel()
		select {
		case p.stopErr = <-p.done:
		case <-time.After(30 * time.Second):
			p.stopErr = errors.New("in-process consumer did not stop within 30s")
		}
		p.pool.Close()
	})
	return p.stopErr
}

// noop implements the actor's three handlers without touching the database. With record set,
// the task handler records handler start − context.sent_at_ns for requests whose context.seq
// is at least warmup.
type noop struct {
	handled atomic.Int64
	record  bool
	warmup  int64
	lat     chan sample
}

// sample is one latency measurement: message seq, sent at (Unix ns), latency.
type sample struct {
	seq    int64
	sentAt int64
	d      time.Duration
}

var _ actor.TaskHandler = (*noop)(nil)

func (h *noop) handlers() actor.Handlers { return actor.Handlers{Task: h, Step: h, Finalization: h} }

// InitializeTasks implements actor.TaskHandler.
func (h *noop) InitializeTasks(_ context.Context, _ pgx.Tx, reqs []messages.TaskRequest) ([]actor.Result[commands.TaskInitializeResult], error) {
	now := time.Now()
	out := make([]actor.Result[commands.TaskInitializeResult], len(reqs))
	for i, req := range reqs {
		if h.record {
			var c struct {
				Seq    int64 `json:"seq"`
				SentAt int64 `json:"sent_at_ns"`
			}
			if err := json.Unmarshal(req.TaskRequest.Context, &c); err == nil && c.SentAt > 0 && c.Seq >= h.warmup {
				select {
				case h.lat <- sample{seq: c.Seq, sentAt: c.SentAt, d: time.Duration(now.UnixNano() - c.SentAt)}:
				default: // cannot happen: the channel holds every message sent
				}
			}
		}
		out[i].Value = commands.TaskInitializeResult{TaskUUID: uuid.New(), Created: true}
	}
	h.handled.Add(int64(len(reqs)))
	return out, nil
}

// ProcessStepResults implements actor.StepHandler.
func (h *noop) ProcessStepResults(_ context.Context, _ pgx.Tx, results []messages.StepResult) ([]actor.Result[commands.StepProcessResult], error) {
	out := make([]actor.Result[commands.StepProcessResult], len(results))
	for i, res := range results {
		out[i].Value = commands.StepProcessResult{TaskUUID: res.TaskUUID, StepUUID: res.StepUUID, Accepted: true, Action: "completed"}
	}
	h.handled.Add(int64(len(results)))
	return out, nil
}

// FinalizeTasks implements actor.FinalizationHandler.
func (h *noop) FinalizeTasks(_ context.Context, _ pgx.Tx, tasks []uuid.UUID) ([]actor.Result[commands.TaskFinalizationResult], error) {
	out := make([]actor.Result[commands.TaskFinalizationResult], len(tasks))
	for i, task := range tasks {
		out[i].Value = commands.TaskFinalizationResult{TaskUUID: task, State: "complete"}
	}
	h.handled.Add(int64(len(tasks)))
	return out, nil
}

// taskRequest returns a valid task request body for a demo template.
func taskRequest(requestID, name, contextJSON string) json.RawMessage {
	return json.RawMessage(`{"request_id":` + strconv.Quote(requestID) +
		`,"task_request":{"namespace":"demo","name":` + strconv.Quote(name) +
		`,"version":"1.0.0","context":` + contextJSON + `}}`)
}

// fill sends n messages to queue in batches of 1000 (one send_batch statement each).
func fill(ctx context.Context, db pgmq.DB, queue string, n int, body func(i int) json.RawMessage) error {
	const chunk = 1000
	for i := 0; i < n; i += chunk {
		bodies := make([]json.RawMessage, 0, chunk)
		for j := i; j < min(n, i+chunk); j++ {
			bodies = append(bodies, body(j))
		}
		if _, err := pgmq.SendBatch(ctx, db, queue, bodies, pgmq.SendOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// queueLength counts the rows of a queue table (visible or not).
func queueLength(ctx context.Context, db pgmq.DB, queue string) (int64, error) {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return 0, err
	}
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM pgmq.q_"+queue).Scan(&n)
	return n, err
}
