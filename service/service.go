package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/actor"
	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/dispatch"
	"github.com/tasker-systems/consumer/internal/depth"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/listener"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/metrics"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/poller"
)

// ReadyTimeout bounds each readiness check: the database and the actor must each answer within
// a second (see docs/operations.md).
const ReadyTimeout = time.Second

// Service is one running consumer pipeline.
type Service struct {
	cfg           *config.Config
	pool          *pgxpool.Pool
	log           *zap.Logger
	notifications *commands.NotificationChannel
	cmds          *commands.CommandChannel
	inFlight      *commands.InFlight
	listener      *listener.Listener // nil in polling mode
	poller        *poller.Poller
	dispatcher    *dispatch.Dispatcher
	actor         *actor.Actor
	depths        *depth.Reader

	testSignals testSignals
}

// testSignals are no-ops unless a test initializes them.
type testSignals struct {
	listening testsignal.Signal[struct{}] // the listener (re)connected and asked for the backlog poll
}

// New builds the pipeline. reg may be nil (no metrics).
func New(cfg *config.Config, pool *pgxpool.Pool, handlers actor.Handlers, log *zap.Logger, reg prometheus.Registerer) (*Service, error) {
	log = cmp.Or(log, zap.NewNop())
	s := &Service{
		cfg: cfg, pool: pool, log: log,
		notifications: commands.NewNotificationChannel(cfg.NotifyBuffer),
		cmds:          commands.NewCommandChannel(cfg.CommandBuffer),
		inFlight:      commands.NewInFlight(),
	}
	var observer actor.Observer
	if reg != nil {
		observer = metrics.NewObserver(reg)
	}
	// One cached, bounded reading of the consumer's own queues serves health and metrics.
	depths, err := depth.New(depth.Config{DB: pool, Queues: append(commands.Queues(), messages.QueueDLQ)})
	if err != nil {
		return nil, err
	}
	s.depths = depths
	s.actor, err = actor.New(actor.Config{
		Pool: pool, Commands: s.cmds, Depths: depths, Notifications: s.notifications, InFlight: s.inFlight, Handlers: handlers,
		VisibilityTimeout: cfg.VisibilityTimeout, MaxReadCount: cfg.MaxReadCount, Concurrency: cfg.Concurrency,
		BatchSize: cfg.BatchSize, ShutdownTimeout: cfg.ShutdownTimeout, MaxMessageBytes: int64(cfg.MaxMessageBytes),
		Observer: observer, Logger: log.Named("actor"),
	})
	if err != nil {
		return nil, err
	}
	s.dispatcher = &dispatch.Dispatcher{In: s.notifications, Out: s.cmds, InFlight: s.inFlight, Logger: log.Named("dispatch")}
	s.poller = &poller.Poller{
		DB: pool, Queues: commands.Queues(), Interval: cfg.PollInterval, BatchSize: cfg.PollBatchSize,
		Periodic: cfg.Mode.Polls(), Out: s.notifications, MinAge: missedAfter(cfg),
		Capacity: s.pollCapacity, Logger: log.Named("poller"),
	}
	if cfg.Mode.Listens() {
		s.listener = &listener.Listener{
			ConnString: cfg.ListenDatabaseURL, Channel: pgmq.OrchestrationChannel, Queues: commands.Queues(),
			Out: s.notifications, PingInterval: cfg.ListenerPing, ReconnectMax: cfg.ReconnectMax, PingDB: pool,
			OnBacklog: func(context.Context) {
				s.poller.TriggerAll()
				s.testSignals.listening.Signal(struct{}{})
			},
			OnQueueReady: s.poller.Trigger,
			Logger:       log.Named("listener"),
		}
	}
	if reg != nil {
		s.register(reg)
	}
	return s, nil
}

// missedAfter is how long a message must have been visible before a periodic poll announces it.
// With LISTEN, fresh messages belong to the notification path (announcing them too would only
// race it); one poll interval is ample for a NOTIFY to arrive. Without LISTEN, every message.
func missedAfter(cfg *config.Config) time.Duration {
	if cfg.Mode.Listens() {
		return cfg.PollInterval
	}
	return 0
}

// pollCapacity is how many more message ids the poller may discover: twice what the actor can
// work on at once (Concurrency batches of BatchSize; the second half keeps the next batches
// ready), less what is already in flight (dispatched, not finished) and, pessimistically, a full
// poll batch for every notification not yet dispatched. Nothing waiting downstream holds a claim
// (the actor claims a message only when its batch starts), so this bound is about keeping the
// backlog in the queue, where every consumer can reach it, rather than in one consumer's
// channels.
func (s *Service) pollCapacity() int {
	return 2*s.cfg.Concurrency*s.cfg.BatchSize - s.inFlight.Len() - s.notifications.Len()*s.cfg.PollBatchSize
}

func (s *Service) register(reg prometheus.Registerer) {
	metrics.RegisterChannels(reg, s.notifications, s.cmds)
	reg.MustRegister(metrics.NewQueueCollector(s.depths, messages.QueueDLQ))
	metrics.RegisterCounter(reg, "poller_cycles_total", "Fallback poller rounds.", s.poller.Cycles)
	metrics.RegisterCounter(reg, "poller_discovered_total", "Message ids the fallback poller discovered.", s.poller.Discovered)
	metrics.RegisterCounter(reg, "poller_errors_total", "Failed polls.", s.poller.Errors)
	metrics.RegisterCounter(reg, "dispatch_duplicates_total", "Announcements skipped because the message was in flight.", s.dispatcher.Duplicates)
	metrics.RegisterCounter(reg, "dispatch_unknown_queue_total", "Notifications for queues this consumer does not serve.", s.dispatcher.UnknownQueue)
	metrics.RegisterGauge(reg, "in_flight_messages", "Messages handed to the actor and not finished.", func() float64 { return float64(s.inFlight.Len()) })
	if s.listener != nil {
		metrics.RegisterCounter(reg, "listener_reconnects_total", "LISTEN connection re-establishments.", s.listener.Reconnects)
		metrics.RegisterCounter(reg, "listener_notifications_total", "Notifications received.", s.listener.Received)
		metrics.RegisterCounter(reg, "listener_malformed_total", "Malformed notification payloads.", s.listener.Malformed)
		metrics.RegisterGauge(reg, "listener_connected", "1 while the LISTEN connection is up.", func() float64 {
			if s.listener.Connected() {
				return 1
			}
			return 0
		})
	}
}

// Commands is the actor's command channel, for in-process requests.
func (s *Service) Commands() *commands.CommandChannel { return s.cmds }

// Run runs the pipeline until ctx ends, then drains (see the package documentation).
func (s *Service) Run(ctx context.Context) error {
	// A part that fails for good stops the others: a consumer without its listener or actor
	// must end rather than run half-working.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				stop()
			}
		}()
	}
	run("actor", s.actor.Run)
	run("dispatcher", s.dispatcher.Run)
	run("poller", s.poller.Run)
	if s.cfg.Mode == config.ModeEventDriven {
		run("redelivery poll", s.pollForRedeliveries)
	}
	if s.listener != nil {
		run("listener", s.listener.Run)
	} else {
		s.poller.TriggerAll() // polling mode: don't wait a poll interval for the backlog
	}
	s.log.Info("consumer started", zap.String("mode", string(s.cfg.Mode)), zap.Duration("visibility_timeout", s.cfg.VisibilityTimeout),
		zap.Int("concurrency", s.cfg.Concurrency), zap.Int("batch_size", s.cfg.BatchSize))
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// pollForRedeliveries asks the poller for a full poll once per visibility timeout, in
// event_driven mode: NOTIFY never announces a message whose visibility timeout ran out (a
// delivery that failed) or a delayed one, so without this they would wait for the next
// reconnect. Once per visibility timeout retries them on time at almost no cost.
func (s *Service) pollForRedeliveries(ctx context.Context) error {
	t := time.NewTicker(s.cfg.VisibilityTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poller.TriggerAll()
		}
	}
}

// Health asks the actor for its SystemHealth report.
func (s *Service) Health(ctx context.Context) (commands.SystemHealth, error) {
	return commands.Request(ctx, s.actor.Control(), func(r commands.Responder[commands.SystemHealth]) commands.Command {
		return commands.HealthCheck{Reply: r}
	})
}

// Stats asks the actor for its statistics.
func (s *Service) Stats(ctx context.Context) (commands.StatsSnapshot, error) {
	return commands.Request(ctx, s.actor.Control(), func(r commands.Responder[commands.StatsSnapshot]) commands.Command {
		return commands.GetProcessingStats{Reply: r}
	})
}

// Check is one readiness check's result.
type Check struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Readiness is the /readyz report.
type Readiness struct {
	Ready  bool                   `json:"ready"`
	Checks map[string]Check       `json:"checks"`
	Health *commands.SystemHealth `json:"health,omitempty"`
}

// Ready runs the readiness checks: the database answers, the actor answers a health command
// within a second, and (outside polling mode) the listener is connected.
func (s *Service) Ready(ctx context.Context) Readiness {
	r := Readiness{Ready: true, Checks: map[string]Check{}}
	set := func(name string, err error) {
		c := Check{OK: err == nil}
		if err != nil {
			c.Error = err.Error()
			r.Ready = false
		}
		r.Checks[name] = c
	}
	dbCtx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	set("database", s.pool.Ping(dbCtx))
	cancel()

	actorCtx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	h, err := s.Health(actorCtx)
	cancel()
	if err == nil {
		r.Health = &h
	}
	set("actor", err)

	if s.listener != nil {
		var lerr error
		if !s.listener.Connected() {
			lerr = errors.New("LISTEN connection is down (reconnecting)")
		}
		set("listener", lerr)
	}
	return r
}
