package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testsignal"
)

// Dispatcher forwards notifications from In to Out as commands.
type Dispatcher struct {
	// In is the notification channel. Required.
	In *commands.NotificationChannel
	// Out is the command channel. Required.
	Out *commands.CommandChannel
	// InFlight is shared with the actor, which removes what it finishes. Required.
	InFlight *commands.InFlight
	// Logger receives unknown queues (warn) and skipped duplicates (debug). If nil, nothing is
	// logged.
	Logger *zap.Logger

	// TestSignals let this module's tests wait for the dispatcher's work; they do nothing
	// unless a test initializes them.
	TestSignals TestSignals

	dispatched   atomic.Uint64
	duplicates   atomic.Uint64
	unknownQueue atomic.Uint64
}

// TestSignals are the moments of a Dispatcher's work that tests wait for.
type TestSignals struct {
	Sending testsignal.Signal[commands.MsgRef]       // a command is about to be sent to Out
	Handled testsignal.Signal[commands.Notification] // every id of a notification was forwarded or skipped
}

// validate checks the required fields.
func (d *Dispatcher) validate() error {
	var errs []error
	if d.In == nil {
		errs = append(errs, errors.New("In is nil"))
	}
	if d.Out == nil {
		errs = append(errs, errors.New("Out is nil"))
	}
	if d.InFlight == nil {
		errs = append(errs, errors.New("InFlight is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	return nil
}

// Run forwards until ctx ends. It returns nil then, or an error when a required field is unset.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.validate(); err != nil {
		return err
	}
	log := cmp.Or(d.Logger, zap.NewNop())
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-d.In.Receive():
			if err := d.dispatch(ctx, log, n); err != nil {
				return nil // only a cancelled context stops a send
			}
		}
	}
}

// dispatch sends one command per announced id that is not in flight already: the poller and
// the listener may both announce a message, and the listener may announce it again.
func (d *Dispatcher) dispatch(ctx context.Context, log *zap.Logger, n commands.Notification) error {
	kind := commands.KindForQueue(n.Queue)
	if kind == commands.KindUnknown {
		d.unknownQueue.Add(1)
		log.Warn("notification for a queue this consumer does not serve",
			zap.String("queue", n.Queue), zap.Int("msg_ids", len(n.MsgIDs)))
		d.TestSignals.Handled.Signal(n)
		return nil
	}
	for _, id := range n.MsgIDs {
		cmd := commands.ProcessMessage{Kind: kind, Queue: n.Queue, MsgID: id, ReceivedAt: n.ReceivedAt}
		ref := cmd.Ref()
		if !d.InFlight.Add(ref) {
			d.duplicates.Add(1)
			log.Debug("announcement of a message already in flight", zap.String("queue", n.Queue), zap.Int64("msg_id", id))
			continue
		}
		d.TestSignals.Sending.Signal(ref)
		if err := d.Out.Send(ctx, cmd); err != nil {
			d.InFlight.Remove(ref)
			return err
		}
		d.dispatched.Add(1)
	}
	d.TestSignals.Handled.Signal(n)
	return nil
}

// Dispatched counts commands sent.
func (d *Dispatcher) Dispatched() uint64 { return d.dispatched.Load() }

// Duplicates counts announcements skipped because the message was already in flight.
func (d *Dispatcher) Duplicates() uint64 { return d.duplicates.Load() }

// UnknownQueue counts notifications for queues the consumer does not serve.
func (d *Dispatcher) UnknownQueue() uint64 { return d.unknownQueue.Load() }
