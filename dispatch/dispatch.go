package dispatch

import (
	"context"
	"errors"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
)

// Dispatcher forwards notifications from In to Out as commands.
type Dispatcher struct {
	// In is the notification channel (required).
	In *commands.NotificationChannel
	// Out is the command channel (required).
	Out *commands.CommandChannel
	// InFlight is shared with the actor, which removes what it finishes (required).
	InFlight *commands.InFlight
	// Logger; nil means no logging.
	Logger *zap.Logger

	dispatched   atomic.Uint64
	duplicates   atomic.Uint64
	unknownQueue atomic.Uint64
}

// Run forwards until ctx ends. It returns nil then, or an error when a required field is unset.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.In == nil || d.Out == nil || d.InFlight == nil {
		return errors.New("dispatch: In, Out and InFlight are required")
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-d.In.Receive():
			if err := d.dispatch(ctx, n); err != nil {
				return nil // only a cancelled context stops a send
			}
		}
	}
}

func (d *Dispatcher) dispatch(ctx context.Context, n commands.Notification) error {
	kind := commands.KindForQueue(n.Queue)
	if kind == commands.KindUnknown {
		d.unknownQueue.Add(1)
		// A claimed message of an unknown queue comes back after its visibility timeout; say so.
		d.Logger.Warn("notification for a queue this consumer does not serve",
			zap.String("queue", n.Queue), zap.Int("msg_ids", len(n.MsgIDs)), zap.Int("claimed", len(n.Messages)))
		return nil
	}
	for _, id := range n.MsgIDs {
		ref := commands.MsgRef{Queue: n.Queue, MsgID: id}
		if !d.InFlight.Add(ref) {
			d.duplicates.Add(1)
			d.Logger.Debug("announcement of a message already in flight", zap.String("queue", n.Queue), zap.Int64("msg_id", id))
			continue
		}
		cmd := commands.ProcessMessageEvent{Kind: kind, Queue: n.Queue, MsgID: id, ReceivedAt: n.ReceivedAt}
		if err := d.Out.Send(ctx, cmd); err != nil {
			d.InFlight.Remove(ref)
			return err
		}
		d.dispatched.Add(1)
	}
	for _, m := range n.Messages {
		// Always forwarded: the poller holds the claim. If the same id is also queued as an
		// event, that event will simply find nothing to claim.
		d.InFlight.Add(commands.MsgRef{Queue: n.Queue, MsgID: m.ID})
		cmd := commands.ProcessMessage{Kind: kind, Queue: n.Queue, Message: m, ReceivedAt: n.ReceivedAt}
		if err := d.Out.Send(ctx, cmd); err != nil {
			return err
		}
		d.dispatched.Add(1)
	}
	return nil
}

// Dispatched counts commands sent.
func (d *Dispatcher) Dispatched() uint64 { return d.dispatched.Load() }

// Duplicates counts announcements skipped because the message was already in flight.
func (d *Dispatcher) Duplicates() uint64 { return d.duplicates.Load() }

// UnknownQueue counts notifications for queues the consumer does not serve.
func (d *Dispatcher) UnknownQueue() uint64 { return d.unknownQueue.Load() }
