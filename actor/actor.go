package actor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
)

// Defaults for zero-valued Config fields.
const (
	DefaultConcurrency       = 8
	DefaultBatchSize         = 64
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultMaxReadCount      = 5
	DefaultShutdownTimeout   = 30 * time.Second
)

// Config configures an Actor. Pool, Commands and all three Handlers are required.
type Config struct {
	Pool     *pgxpool.Pool
	Commands *commands.CommandChannel
	// Control carries control commands (stats, health, shutdown) past the queued work, so a busy
	// actor still answers a health check at once; nil gets a private channel (see Control).
	// Any command is accepted on either channel.
	Control *commands.CommandChannel
	// Notifications is only read for its saturation in health reports; may be nil.
	Notifications *commands.NotificationChannel
	// InFlight is shared with the dispatcher; nil gets a private set.
	InFlight *commands.InFlight
	Handlers Handlers
	// VisibilityTimeout for claims (TAS-152); 0 means 30s.
	VisibilityTimeout time.Duration
	// MaxReadCount: deliveries before a message is dead-lettered; 0 means 5.
	MaxReadCount int
	// Concurrency: batches processed at once; 0 means 8.
	Concurrency int
	// BatchSize: messages per transaction at most; 0 means 64.
	BatchSize int
	// ShutdownTimeout bounds the drain of in-flight work after the context ends; 0 means 30s.
	ShutdownTimeout time.Duration
	// Observer receives per-message measurements (metrics); nil means none.
	Observer Observer
	Logger   *zap.Logger
	Now      func() time.Time
}

// Observer receives measurements; implementations must be safe for concurrent use.
type Observer interface {
	// MessageDone is called once per message outcome: handling took handlerTime, and
	// sinceReceived is the time from the notification (or poll) to the end of handling.
	MessageDone(queue string, outcome commands.Outcome, handlerTime, sinceReceived time.Duration)
	// BatchDone is called once per transaction.
	BatchDone(queue string, size int, took time.Duration, committed bool)
}

type nopObserver struct{}

func (nopObserver) MessageDone(string, commands.Outcome, time.Duration, time.Duration) {}
func (nopObserver) BatchDone(string, int, time.Duration, bool)                         {}

// Actor is the command processor. Create it with New and run it with Run.
type Actor struct {
	cfg   Config
	log   *zap.Logger
	now   func() time.Time
	obs   Observer
	stats *commands.Stats

	// workCtx outlives the intake context so in-flight batches can finish during shutdown;
	// it is cancelled when the drain deadline passes.
	workCtx    context.Context
	cancelWork context.CancelFunc
	wg         sync.WaitGroup
}

// New validates cfg and returns an Actor.
func New(cfg Config) (*Actor, error) {
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
	if len(errs) > 0 {
		return nil, fmt.Errorf("actor: %w", errors.Join(errs...))
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if cfg.MaxReadCount <= 0 {
		cfg.MaxReadCount = DefaultMaxReadCount
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.InFlight == nil {
		cfg.InFlight = commands.NewInFlight()
	}
	if cfg.Control == nil {
		cfg.Control = commands.NewChannel[commands.Command]("orchestration_control", 16)
	}
	a := &Actor{cfg: cfg, log: cfg.Logger, now: cfg.Now, obs: cfg.Observer}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.obs == nil {
		a.obs = nopObserver{}
	}
	a.stats = commands.NewStats(a.now())
	return a, nil
}

// Control returns the control channel: send health checks, stats requests and shutdown here.
func (a *Actor) Control() *commands.CommandChannel { return a.cfg.Control }

// Stats returns the live statistics (also available through GetProcessingStats).
func (a *Actor) Stats() *commands.Stats { return a.stats }

// Run processes commands until ctx ends or a Shutdown command arrives. It then stops taking
// commands, lets in-flight batches finish for up to ShutdownTimeout (cancelling them after
// that: their transactions roll back and the messages come back after their visibility
// timeout), and returns. Commands still queued are not processed: their messages are still
// in their queues.
func (a *Actor) Run(ctx context.Context) error {
	a.workCtx, a.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	defer a.cancelWork()

	slots := make(chan struct{}, a.cfg.Concurrency)
	var pending []work
	var shutdownReply *commands.Responder[struct{}]
loop:
	for {
		in := a.cfg.Commands.Receive()
		if len(pending) >= a.cfg.BatchSize*2 {
			in = nil // enough queued locally: leave the rest in the channel (backpressure)
		}
		var slot chan<- struct{}
		if len(pending) > 0 {
			slot = slots
		}
		select {
		case <-ctx.Done():
			break loop
		case cmd := <-a.cfg.Control.Receive():
			if sd, ok := cmd.(commands.Shutdown); ok {
				shutdownReply = &sd.Reply
				break loop
			}
			pending = a.accept(ctx, pending, cmd)
		case cmd := <-in:
			if sd, ok := cmd.(commands.Shutdown); ok {
				shutdownReply = &sd.Reply
				break loop
			}
			pending = a.accept(ctx, pending, cmd)
			// Take whatever else is already queued, so a burst becomes few large batches.
		more:
			for len(pending) < a.cfg.BatchSize*2 {
				select {
				case next := <-in:
					if sd, ok := next.(commands.Shutdown); ok {
						shutdownReply = &sd.Reply
						break loop
					}
					pending = a.accept(ctx, pending, next)
				default:
					break more
				}
			}
		case slot <- struct{}{}:
			var batch []work
			batch, pending = takeBatch(pending, a.cfg.BatchSize)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer func() { <-slots }()
				a.runBatch(batch)
			}()
		}
	}
	for _, w := range pending {
		w.abandon(a)
	}
	a.drain()
	if shutdownReply != nil {
		a.reply(commands.KindUnknown, "shutdown", func() bool { return shutdownReply.Send(struct{}{}, nil) })
	}
	return nil
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

// accept turns a command into pending work, or answers it at once when it is a control command.
func (a *Actor) accept(ctx context.Context, pending []work, cmd commands.Command) []work {
	switch c := cmd.(type) {
	case commands.GetProcessingStats:
		snap := a.stats.Snapshot()
		a.reply(commands.KindUnknown, "stats", func() bool { return c.Reply.Send(snap, nil) })
	case commands.HealthCheck:
		// Off the loop: it queries the database, and the loop must keep answering.
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			h := a.health(ctx)
			a.reply(commands.KindUnknown, "health", func() bool { return c.Reply.Send(h, nil) })
		}()
	case commands.ProcessMessageEvent:
		return append(pending, work{queue: c.Queue, kind: c.Kind, event: &c})
	case commands.ProcessMessage:
		return append(pending, work{queue: c.Queue, kind: c.Kind, claimed: &c})
	case commands.InitializeTask, commands.ProcessStepResult, commands.FinalizeTask:
		return append(pending, work{direct: cmd})
	default:
		a.log.Error("unknown command type", zap.String("type", fmt.Sprintf("%T", cmd)))
	}
	return pending
}

// reply sends a reply through send and logs at ERROR when the requester stopped waiting.
func (a *Actor) reply(kind commands.Kind, what string, send func() bool) {
	if !send() {
		a.log.Error("reply dropped: the requester stopped waiting before the reply was sent",
			zap.String("command", what), zap.Stringer("kind", kind))
	}
}

// takeBatch removes up to n items for one queue from pending (the queue of the first item;
// direct commands travel alone).
func takeBatch(pending []work, n int) (batch, rest []work) {
	first := pending[0]
	if first.direct != nil {
		return pending[:1:1], pending[1:]
	}
	rest = pending[:0:0]
	for _, w := range pending {
		if len(batch) < n && w.direct == nil && w.queue == first.queue {
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	return batch, rest
}
