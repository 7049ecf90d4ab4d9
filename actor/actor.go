package actor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/depth"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/tasker"
)

// Defaults of the Config fields.
const (
	ConcurrencyDefault       = 8
	BatchSizeDefault         = 64
	VisibilityTimeoutDefault = tasker.VisibilityTimeoutDefault
	MaxReadCountDefault      = 5
	MaxMessageBytesDefault   = 4 << 20
	ShutdownTimeoutDefault   = 30 * time.Second
)

// controlBuffer is the capacity of the private control channel (Config.Control nil).
const controlBuffer = 16

// Config configures an Actor. Pool, Commands and all three Handlers are required; every other
// field has a default.
type Config struct {
	Pool     *pgxpool.Pool
	Commands *commands.CommandChannel
	// Control carries control commands (stats, health) past the queued work, so a busy actor
	// still answers a health check at once. If nil, a private channel is used (see Control).
	// Any command is accepted on either channel.
	Control *commands.CommandChannel
	// Notifications is only read for its saturation in health reports; may be nil.
	Notifications *commands.NotificationChannel
	// Depths reads the orchestration queues' and the DLQ's depths for health reports; it
	// should be cheap and cached (internal/depth). If nil, a reader of those queues is made.
	Depths Depths
	// InFlight is shared with the dispatcher. If nil, a private set is used.
	InFlight *commands.InFlight
	Handlers Handlers
	// VisibilityTimeout hides each claimed message from other claimers. If 0, the default of
	// 30 seconds is used.
	VisibilityTimeout time.Duration
	// MaxReadCount is how many deliveries a message gets before it is dead-lettered. If 0,
	// the default of 5 is used.
	MaxReadCount int
	// MaxMessageBytes is the largest body handled: a larger one is dead-lettered
	// (message_too_large) by the claim, in the database, without being read. If 0, the default
	// of 4 MiB is used.
	MaxMessageBytes int64
	// Concurrency is how many batches are processed at once. If 0, the default of 8 is used.
	Concurrency int
	// QueueConcurrency is how many of those batches may be of one queue. While a queue's
	// batches are all running, its new messages wait for one of them to end instead of
	// starting more small batches that contend for the same rows (they never wait for a
	// batch to fill). If 0, half of Concurrency (at least 1) is used; at most Concurrency.
	QueueConcurrency int
	// BatchSize is the most messages one transaction handles. If 0, the default of 64 is used.
	BatchSize int
	// ShutdownTimeout bounds the drain of in-flight work after the context ends. If 0, the
	// default of 30 seconds is used.
	ShutdownTimeout time.Duration
	// Observer receives per-message measurements (metrics). If nil, none are taken.
	Observer Observer
	// Logger receives one line per failure (error) and per outcome (debug). If nil, nothing is
	// logged.
	Logger *zap.Logger
	// Now is the clock of statistics, latencies and dead letters. If nil, time.Now is used.
	Now func() time.Time
}

// Depths reads queue depths.
type Depths interface {
	Read(ctx context.Context) (depth.Reading, error)
}

// Observer receives measurements; implementations must be safe for concurrent use.
type Observer interface {
	// MessageDone is called once per message outcome: handling took handlerTime, and
	// sinceReceived is the time from the notification (or poll) to the start of its handler
	// (to the outcome, for a message that never reached one).
	MessageDone(queue string, outcome commands.Outcome, handlerTime, sinceReceived time.Duration)
	// BatchDone is called once per transaction.
	BatchDone(queue string, size int, took time.Duration, committed bool)
}

type nopObserver struct{}

func (nopObserver) MessageDone(string, commands.Outcome, time.Duration, time.Duration) {}
func (nopObserver) BatchDone(string, int, time.Duration, bool)                         {}

// Actor is the command processor. Create it with New and run it with Run.
type Actor struct {
	cfg   Config // defaults applied
	log   *zap.Logger
	now   func() time.Time
	obs   Observer
	stats *commands.Stats

	// TestSignals let this module's tests (the actor's and the service's) wait for the actor's
	// work; they do nothing unless a test initializes them.
	TestSignals TestSignals

	// workCtx outlives the intake context so in-flight batches can finish during shutdown;
	// it is cancelled when the drain deadline passes.
	workCtx    context.Context
	cancelWork context.CancelFunc
	wg         sync.WaitGroup
}

// TestSignals are the moments of an Actor's work that tests wait for.
type TestSignals struct {
	Finished     testsignal.Signal[commands.MessageOutcome] // a message's outcome was recorded
	ReplyDropped testsignal.Signal[string]                  // a reply found its requester gone (the command)
}

// New validates cfg and returns an Actor.
func New(cfg Config) (*Actor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.VisibilityTimeout = cmp.Or(cfg.VisibilityTimeout, VisibilityTimeoutDefault)
	cfg.MaxReadCount = cmp.Or(cfg.MaxReadCount, MaxReadCountDefault)
	cfg.MaxMessageBytes = cmp.Or(cfg.MaxMessageBytes, MaxMessageBytesDefault)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, ConcurrencyDefault)
	cfg.QueueConcurrency = min(cmp.Or(cfg.QueueConcurrency, max(cfg.Concurrency/2, 1)), cfg.Concurrency)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, BatchSizeDefault)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, ShutdownTimeoutDefault)
	cfg.Logger = cmp.Or(cfg.Logger, zap.NewNop())
	cfg.Observer = cmp.Or[Observer](cfg.Observer, nopObserver{})
	if cfg.InFlight == nil {
		cfg.InFlight = commands.NewInFlight()
	}
	if cfg.Depths == nil {
		d, err := depth.New(depth.Config{DB: cfg.Pool, Queues: append(commands.Queues(), messages.QueueDLQ)})
		if err != nil {
			return nil, fmt.Errorf("actor: %w", err)
		}
		cfg.Depths = d
	}
	if cfg.Control == nil {
		cfg.Control = commands.NewChannel[commands.Command]("orchestration_control", controlBuffer)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Actor{cfg: cfg, log: cfg.Logger, now: cfg.Now, obs: cfg.Observer, stats: commands.NewStats(cfg.Now())}, nil
}

// validate checks the required fields and refuses negative values; errors name the field.
func (cfg *Config) validate() error {
	var errs []error
	if cfg.Pool == nil {
		errs = append(errs, errors.New("Pool is required"))
	}
	if cfg.Commands == nil {
		errs = append(errs, errors.New("Commands is required"))
	}
	if cfg.Handlers.Task == nil || cfg.Handlers.Step == nil || cfg.Handlers.Finalization == nil {
		errs = append(errs, errors.New("Handlers.Task, Handlers.Step and Handlers.Finalization are required"))
	}
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"VisibilityTimeout", cfg.VisibilityTimeout < 0}, {"MaxReadCount", cfg.MaxReadCount < 0}, {"MaxMessageBytes", cfg.MaxMessageBytes < 0},
		{"Concurrency", cfg.Concurrency < 0}, {"QueueConcurrency", cfg.QueueConcurrency < 0}, {"BatchSize", cfg.BatchSize < 0}, {"ShutdownTimeout", cfg.ShutdownTimeout < 0},
	} {
		if f.negative {
			errs = append(errs, fmt.Errorf("%s is negative", f.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("actor: %w", err)
	}
	return nil
}

// Control returns the control channel: send health checks and stats requests here.
func (a *Actor) Control() *commands.CommandChannel { return a.cfg.Control }

// Stats returns the live statistics (also available through GetProcessingStats).
func (a *Actor) Stats() *commands.Stats { return a.stats }

// Run processes commands until ctx ends. It then stops taking commands, lets in-flight batches
// finish for up to ShutdownTimeout (cancelling them after that: their transactions roll back and
// the messages come back after their visibility timeout), and returns. Commands still queued are
// not processed: their messages are still in their queues.
//
// A message is claimed only when its batch starts, inside the batch transaction: whatever waits
// in the channels or in the actor's own queue holds no claim, so a backlog never makes a claim
// expire before its handler runs.
func (a *Actor) Run(ctx context.Context) error {
	a.workCtx, a.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	defer a.cancelWork()

	slots := make(chan struct{}, a.cfg.Concurrency)
	var mu sync.Mutex
	running := map[string]int{}     // batches running, by queue (under mu)
	ended := make(chan struct{}, 1) // wakes the loop when a batch ended
	var pending []commands.ProcessMessage
	for {
		in := a.cfg.Commands.Receive()
		if len(pending) >= a.maxPending() {
			in = nil // enough queued locally: leave the rest in the channel (backpressure)
		}
		var slot chan<- struct{}
		mu.Lock()
		next := a.nextQueue(pending, running)
		mu.Unlock()
		if next != "" {
			slot = slots
		}
		select {
		case <-ctx.Done():
			a.abandon(pending)
			a.drain()
			return nil
		case cmd := <-a.cfg.Control.Receive():
			pending = a.accept(ctx, pending, cmd)
		case cmd := <-in:
			pending = a.takeQueued(ctx, a.accept(ctx, pending, cmd), in)
		case <-ended:
		case slot <- struct{}{}:
			var batch []commands.ProcessMessage
			batch, pending = takeBatch(pending, next, a.cfg.BatchSize)
			mu.Lock()
			running[next]++
			mu.Unlock()
			a.wg.Go(func() {
				defer func() {
					mu.Lock()
					running[next]--
					mu.Unlock()
					select {
					case ended <- struct{}{}:
					default: // the loop is already woken
					}
					<-slots
				}()
				a.runBatch(batch)
			})
		}
	}
}

// maxPending is how many messages the actor queues locally: two batches, so that the next one
// is ready when a slot frees.
func (a *Actor) maxPending() int { return 2 * a.cfg.BatchSize }

// takeQueued takes whatever else is already queued on in, up to maxPending, so that a burst
// becomes few large batches.
func (a *Actor) takeQueued(ctx context.Context, pending []commands.ProcessMessage, in <-chan commands.Command) []commands.ProcessMessage {
	for len(pending) < a.maxPending() {
		select {
		case cmd := <-in:
			pending = a.accept(ctx, pending, cmd)
		default:
			return pending
		}
	}
	return pending
}

// drain waits for in-flight batches, cancelling them when the shutdown timeout passes.
func (a *Actor) drain() {
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	timer := time.NewTimer(a.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		a.log.Warn("shutdown timeout: cancelling in-flight batches; their messages return after the visibility timeout",
			zap.Duration("shutdown_timeout", a.cfg.ShutdownTimeout))
		a.cancelWork()
		<-done
	}
}

// accept queues a message command, or answers a control command at once.
func (a *Actor) accept(ctx context.Context, pending []commands.ProcessMessage, cmd commands.Command) []commands.ProcessMessage {
	switch c := cmd.(type) {
	case commands.ProcessMessage:
		return append(pending, c)
	case commands.GetProcessingStats:
		snap := a.stats.Snapshot()
		a.reply(commands.KindUnknown, "stats", func() bool { return c.Reply.Send(snap, nil) })
	case commands.HealthCheck:
		// Off the loop: it queries the database, and the loop must keep answering.
		a.wg.Go(func() {
			h := a.health(ctx)
			a.reply(commands.KindUnknown, "health", func() bool { return c.Reply.Send(h, nil) })
		})
	default:
		a.log.Error("unknown command type", zap.String("type", fmt.Sprintf("%T", cmd)))
	}
	return pending
}

// abandon answers the queued messages that shutdown prevented from starting: nothing happened
// to them, and nothing claimed them.
func (a *Actor) abandon(pending []commands.ProcessMessage) {
	for _, c := range pending {
		a.cfg.InFlight.Remove(c.Ref())
		a.reply(c.Kind, "message", func() bool {
			return c.Reply.Send(commands.MessageOutcome{Ref: c.Ref(), Outcome: commands.OutcomeFailed, Detail: "consumer shutting down"}, errShuttingDown)
		})
	}
}

// reply sends a reply through send and logs at ERROR when the requester stopped waiting.
func (a *Actor) reply(kind commands.Kind, what string, send func() bool) {
	if !send() {
		a.log.Error("reply dropped: the requester stopped waiting before the reply was sent",
			zap.String("command", what), zap.Stringer("kind", kind))
		a.TestSignals.ReplyDropped.Signal(what)
	}
}

// nextQueue returns the queue of the next batch: that of the oldest pending message whose
// queue has fewer than QueueConcurrency batches running, or "" for none.
func (a *Actor) nextQueue(pending []commands.ProcessMessage, running map[string]int) string {
	for _, c := range pending {
		if running[c.Queue] < a.cfg.QueueConcurrency {
			return c.Queue
		}
	}
	return ""
}

// takeBatch removes up to n messages of queue from pending.
func takeBatch(pending []commands.ProcessMessage, queue string, n int) (batch, rest []commands.ProcessMessage) {
	rest = pending[:0:0]
	for _, c := range pending {
		if len(batch) < n && c.Queue == queue {
			batch = append(batch, c)
		} else {
			rest = append(rest, c)
		}
	}
	return batch, rest
}
