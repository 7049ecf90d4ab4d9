package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/poller"
	"github.com/tasker-systems/consumer/tasker"
)

// Defaults of the Worker fields.
const (
	ConcurrencyDefault       = 8
	VisibilityTimeoutDefault = tasker.VisibilityTimeoutDefault
	PollIntervalDefault      = poller.IntervalDefault
	ShutdownTimeoutDefault   = 30 * time.Second
	// ApplicationNameDefault stands for the pool's application_name when it has none, in the
	// name of the LISTEN connection (this name with appname.ListenerSuffix).
	ApplicationNameDefault = "worker"
)

// notificationBuffer is the capacity of the channel from the listener to the poll loop: a
// notification only wakes the loop, so a few suffice.
const notificationBuffer = 16

// resultTries is how many times the result transaction is attempted before the dispatch is
// left to reappear after its visibility timeout.
const resultTries = 3

// Worker runs step handlers for one namespace: it claims step dispatches from
// worker_<namespace>_queue, runs the registered Handler for each dispatch's callable, and
// reports each outcome to orchestration_step_results.
//
// Configure it through the exported fields and Handle, then call Run. Do not change the fields
// while Run is running.
type Worker struct {
	// Pool is where the queues live. Required. It serves the reads, heartbeats and result
	// transactions, so give it a few more connections than Concurrency if handlers also use it.
	Pool *pgxpool.Pool

	// ListenConnString is the connection string of a dedicated connection that LISTENs for new
	// dispatches (it must not go through a transaction-mode pooler such as PgBouncer). If empty,
	// the worker does not LISTEN and finds work by polling only, every PollInterval. If the
	// string sets no application_name, the connection uses the pool's application_name with
	// "-listener" appended, or "worker-listener" when the pool has none.
	ListenConnString string

	// Namespace selects the queue (worker_<namespace>_queue) and the NOTIFY channel
	// (pgmq_message_ready.<namespace>). Required: [a-z][a-z0-9_]*, at most 29 characters.
	Namespace string

	// Concurrency is the most handlers running at once; the worker never claims more messages
	// than it has free slots. If set to 0, the default of 8 is used.
	Concurrency int

	// VisibilityTimeout hides a claimed dispatch from other workers. While its handler runs,
	// heartbeats keep extending it; if the worker dies, the dispatch reappears this long after
	// the last heartbeat. PGMQ counts whole seconds (1s is the minimum). If set to 0, the
	// default of 30 seconds is used.
	VisibilityTimeout time.Duration

	// HeartbeatInterval is how often a running step's visibility timeout is extended
	// (pgmq.set_vt to VisibilityTimeout from now). It must be shorter than VisibilityTimeout.
	// If set to 0, VisibilityTimeout/3 is used. If negative, there are no heartbeats: a step
	// that runs longer than VisibilityTimeout is delivered again to another worker (useful only
	// to test redelivery).
	HeartbeatInterval time.Duration

	// PollInterval is the time between polls of the queue, which find what NOTIFY cannot
	// announce (delayed retries, expired visibility timeouts, messages sent while the listener
	// reconnected). Each wait is jittered by ±10 % (poller.Jitter). If set to 0, the default of
	// 1 second is used.
	PollInterval time.Duration

	// ShutdownTimeout is how long running handlers may go on after Run's context ends before
	// their own context is cancelled. If set to 0, the default of 30 seconds is used.
	ShutdownTimeout time.Duration

	// WorkerID identifies this worker in each result's metadata.worker_id and in logs. If
	// empty, "<hostname>-<pid>" is used.
	WorkerID string

	// Logger receives one line per failed step, malformed dispatch or database error, and
	// debug details. If nil, nothing is logged.
	Logger *zap.Logger

	// Now is the clock used to measure execution_time_ms. If nil, time.Now is used.
	Now func() time.Time

	mu       sync.RWMutex
	handlers map[string]Handler

	running   atomic.Bool
	processed atomic.Uint64
	failed    atomic.Uint64

	testSignals workerTestSignals
}

// Handle registers h for dispatches whose handler.callable is callable. Register every
// callable before Run; a dispatch whose callable has no handler is reported as a permanent
// error (status "error"), so that its task does not wait forever. Handle panics on an empty
// callable, a nil handler or a callable registered twice, like http.Handle.
func (w *Worker) Handle(callable string, h Handler) {
	if callable == "" {
		panic("worker: Handle: empty callable")
	}
	if h == nil {
		panic("worker: Handle: nil handler for " + strconv.Quote(callable))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.handlers[callable]; dup {
		panic("worker: Handle: callable " + strconv.Quote(callable) + " registered twice")
	}
	if w.handlers == nil {
		w.handlers = make(map[string]Handler)
	}
	w.handlers[callable] = h
}

func (w *Worker) handler(callable string) Handler {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.handlers[callable]
}

// Processed returns the number of dispatches this worker has finished: a result committed
// (whatever its status) or a malformed dispatch archived.
func (w *Worker) Processed() uint64 { return w.processed.Load() }

// Failed returns how many of the Processed dispatches did not succeed: results with status
// failed or error, and malformed dispatches.
func (w *Worker) Failed() uint64 { return w.failed.Load() }

// config is a Worker's configuration with the defaults applied.
type config struct {
	pool        *pgxpool.Pool
	listen      string // ListenConnString; empty: polling only
	listenApp   string // the LISTEN connection's application_name unless listen sets one
	queue       string
	channel     string
	concurrency int
	vt          time.Duration
	heartbeat   time.Duration // < 0: disabled
	poll        time.Duration
	shutdown    time.Duration
	opTimeout   time.Duration // bound of one database operation
	workerID    string
	log         *zap.Logger
	now         func() time.Time
}

// validate checks the fields; errors name the field.
func (w *Worker) validate() error {
	var errs []error
	if w.Pool == nil {
		errs = append(errs, errors.New("Pool is nil"))
	}
	if err := messages.ValidateNamespace(w.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("Namespace: %w", err))
	}
	if w.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("negative Concurrency %d", w.Concurrency))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"VisibilityTimeout", w.VisibilityTimeout}, {"PollInterval", w.PollInterval}, {"ShutdownTimeout", w.ShutdownTimeout}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("negative %s %v", f.name, f.d))
		}
	}
	if vt := cmp.Or(w.VisibilityTimeout, VisibilityTimeoutDefault); w.HeartbeatInterval >= vt {
		errs = append(errs, fmt.Errorf("HeartbeatInterval %v must be shorter than VisibilityTimeout %v", w.HeartbeatInterval, vt))
	}
	if w.ListenConnString != "" {
		if _, err := pgx.ParseConfig(w.ListenConnString); err != nil {
			errs = append(errs, fmt.Errorf("ListenConnString: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

// config applies the defaults to a validated Worker.
func (w *Worker) config() *config {
	c := &config{
		pool:        w.Pool,
		listen:      w.ListenConnString,
		queue:       messages.WorkerQueue(w.Namespace),
		concurrency: cmp.Or(w.Concurrency, ConcurrencyDefault),
		vt:          cmp.Or(w.VisibilityTimeout, VisibilityTimeoutDefault),
		poll:        cmp.Or(w.PollInterval, PollIntervalDefault),
		shutdown:    cmp.Or(w.ShutdownTimeout, ShutdownTimeoutDefault),
		workerID:    w.WorkerID,
		log:         cmp.Or(w.Logger, zap.NewNop()),
		now:         w.Now,
	}
	c.channel = tasker.NotifyChannel(c.queue)
	c.heartbeat = cmp.Or(w.HeartbeatInterval, c.vt/3)
	c.opTimeout = max(c.vt, 5*time.Second)
	if c.workerID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "worker"
		}
		c.workerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.now == nil {
		c.now = time.Now
	}
	// A copy: Default fills in the name it returns, and the pool's configuration is not ours.
	c.listenApp = appname.Default(maps.Clone(w.Pool.Config().ConnConfig.RuntimeParams), ApplicationNameDefault) +
		appname.ListenerSuffix
	return c
}

// Run claims and runs dispatches until ctx ends, then shuts down gracefully and returns nil.
// It returns an error only for an invalid configuration (or when already running); database
// errors are logged and retried.
//
// Work is found by LISTEN (if ListenConnString is set; every (re)connect also triggers a poll)
// and by polling every PollInterval: a listener.Listener and a poller.Poller, the consumer's
// own, whose fetch claims with pgmq.read. Each read claims at most as many messages as there
// are free slots (Concurrency minus the running handlers), hiding them for VisibilityTimeout,
// and a read that filled every free slot is repeated as soon as a slot frees. Each message then
// runs in its own goroutine: decode (a malformed dispatch is archived: it can never run), find
// the handler (none: a permanent "error" result), run it with panic recovery while heartbeats
// extend the visibility timeout, then in one transaction delete the dispatch and send the step
// result. If the dispatch was already deleted (it was delivered again and another worker
// finished it first) the transaction is rolled back, so no duplicate result is sent.
//
// When ctx ends, Run stops listening and claiming at once and waits for the running handlers.
// Their contexts are cancelled only after ShutdownTimeout; a handler that then returns an
// error reports nothing and its dispatch is made visible again at once, for another worker.
// Run returns when every handler has returned, so a handler that ignores its context delays
// Run's return.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.validate(); err != nil {
		return err
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: already running")
	}
	defer w.running.Store(false)

	c := w.config()
	log := c.log.With(zap.String("queue", c.queue), zap.String("worker_id", c.workerID))
	log.Info("worker: starting", zap.Int("concurrency", c.concurrency),
		zap.Duration("visibility_timeout", c.vt), zap.Duration("heartbeat_interval", c.heartbeat),
		zap.Bool("listen", c.listen != ""), zap.Duration("poll_interval", c.poll))

	// Handlers and their database work outlive ctx: they get a context of their own,
	// cancelled only when the shutdown timeout runs out.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	r := &run{w: w, c: c, log: log, handlerCtx: handlerCtx, dbCtx: context.WithoutCancel(ctx),
		results: make(chan resultReq, c.concurrency)}
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		r.committer()
	}()

	err := r.intake(ctx)
	w.testSignals.stopping.Signal(struct{}{})
	r.drain(cancelHandlers)
	close(r.results) // every handler has returned: no more results
	<-committerDone
	log.Info("worker: stopped", zap.Uint64("processed", w.Processed()), zap.Uint64("failed", w.Failed()))
	return err
}
