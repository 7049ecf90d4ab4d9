package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/listener"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/poller"
)

// intake finds and starts work until ctx ends: the poller's loop, with a fetch that claims
// dispatches for the free slots, woken by the listener's notifications. It returns when both
// have stopped; handlers started meanwhile are still running.
func (r *run) intake(ctx context.Context) error {
	c := r.c
	r.poller = &poller.Poller{
		Queues:    []string{c.queue},
		Interval:  c.poll,
		BatchSize: c.concurrency,
		Periodic:  true,
		Capacity:  r.free,
		Fetch:     r.fetch,
		Logger:    r.log,
	}
	r.poller.TestSignals.Round = r.w.testSignals.pollRound
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				errs <- err
				stop() // a component refused its configuration: stop the other
			}
		})
	}
	run(r.poller.Run)
	if c.listen != "" {
		notes := commands.NewChannel[commands.Notification]("worker_notifications", notificationBuffer)
		l := &listener.Listener{
			ConnString:      c.listen,
			ApplicationName: c.listenApp,
			Channel:         c.channel,
			Queues:          []string{c.queue},
			Out:             notes,
			PingDB:          c.pool,
			OnBacklog: func(context.Context) {
				r.poller.TriggerAll() // announcements made while disconnected are lost
				r.w.testSignals.listening.Signal(struct{}{})
			},
			OnQueueReady: r.poller.Trigger,
			Logger:       r.log,
		}
		run(l.Run)
		wg.Go(func() { r.wake(ctx, notes) })
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// wake turns each notification into a poll of its queue: a notification only says that work
// is waiting, and the fetch claims what the free slots can take.
func (r *run) wake(ctx context.Context, notes *commands.NotificationChannel) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-notes.Receive():
			r.poller.Trigger(n.Queue)
		}
	}
}

// free is the poller's Capacity: the slots not running a handler.
func (r *run) free() int {
	n := r.c.concurrency - int(r.running.Load())
	r.w.testSignals.capacity.Signal(n)
	return n
}

// fetch is the poller's Fetch: it claims up to max dispatches and starts a handler for each.
func (r *run) fetch(ctx context.Context, queue string, max int) (int, error) {
	// Not cancelled by shutdown: a read interrupted after the server claimed messages would
	// hide them for a whole visibility timeout. What it returns is processed.
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.c.vt)
	msgs, err := pgmq.Read(readCtx, r.c.pool, queue, r.c.vt, max)
	cancel()
	if err != nil {
		return 0, err
	}
	r.w.testSignals.polled.Signal(pollEvent{Asked: max, Claimed: len(msgs)})
	for _, m := range msgs {
		r.running.Add(1)
		r.handlers.Go(func() {
			r.process(m)
			r.running.Add(-1)
			r.poller.CapacityFreed()
		})
	}
	return len(msgs), nil
}

// drain waits for the running handlers, cancelling their context (through cancelHandlers) when
// the shutdown timeout runs out.
func (r *run) drain(cancelHandlers context.CancelFunc) {
	r.log.Info("worker: stopping; waiting for running handlers", zap.Int64("running", r.running.Load()),
		zap.Duration("shutdown_timeout", r.c.shutdown))
	finished := make(chan struct{})
	go func() {
		r.handlers.Wait()
		close(finished)
	}()
	deadline := time.NewTimer(r.c.shutdown)
	defer deadline.Stop()
	select {
	case <-finished:
	case <-deadline.C:
		r.log.Warn("worker: shutdown timeout reached; cancelling running handlers")
		r.forced.Store(true)
		cancelHandlers()
		<-finished
	}
}
